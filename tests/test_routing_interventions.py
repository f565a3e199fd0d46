"""Interventions on the routers: the arithmetic of a changed router, `--ablate` parsing, and on
gpt-oss-tiny (greedy): a no-op changes nothing, an ablation changes the answers, the KV cache is
never shared between the two, and the comparison cell measures it."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from gptoss_lab import harmony
from gptoss_lab.engines.hooks import LayerEdit
from gptoss_lab.routing import Intervention, Routing, disable, force, parse_ablate, top_k
from gptoss_lab.settings import SettingsError

QUESTIONS = ["What is 37 * 12?", "What is 4821 - 1937?", "What is 19 + 23?"]


# ---------------------------------------------------------------- the arithmetic, by hand


LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0]])  # one token, four experts: ranked 0 > 1 > 2 > 3


def _softmax(values):
    e = np.exp(np.asarray(values) - max(values))
    return (e / e.sum()).tolist()


def test_a_disabled_expert_gives_its_place_to_the_next_choice():
    scores, ids = LayerEdit(disabled=frozenset({0})).route(LOGITS, 2)
    assert ids.tolist() == [[1, 2]]
    np.testing.assert_allclose(scores[0].tolist(), _softmax([1.0, 0.0]), rtol=1e-6)


def test_a_disabled_expert_can_leave_its_slot_empty():
    scores, ids = LayerEdit(disabled=frozenset({0}), replace=False).route(LOGITS, 2)
    # the other weight renormalised; the empty slot last, so that slot 0 is the expert used (it was slot 0: every
    # "top-1" analysis read the disabled expert there)
    assert ids.tolist() == [[1, -1]] and scores.tolist() == [[1.0, 0.0]]   # the slot holds no expert (-1)


def test_forced_experts_and_top_k():
    scores, ids = LayerEdit(forced=frozenset({3})).route(LOGITS, 2)
    # chosen whatever its logit; weights from the router's own logits; slots in order of weight (the forced expert
    # stood in slot 0 with the smaller weight, read as the top-1 by every analysis: a researcher's review)
    assert ids.tolist() == [[0, 3]]
    np.testing.assert_allclose(scores[0].tolist(), _softmax([2.0, -1.0]), rtol=1e-6)
    scores, ids = LayerEdit(top_k=3).route(LOGITS, 2)
    assert ids.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(scores[0].tolist(), _softmax([2.0, 1.0, 0.0]), rtol=1e-6)


def test_impossible_edits_are_refused_in_one_line():
    with pytest.raises(ValueError, match="no expert 9"):
        LayerEdit(disabled=frozenset({9})).check(0, 8, 2)
    with pytest.raises(ValueError, match="both disabled and forced"):
        LayerEdit(disabled=frozenset({1}), forced=frozenset({1})).check(0, 8, 2)
    with pytest.raises(ValueError, match="do not fit in its top-2"):
        LayerEdit(forced=frozenset({1, 2, 3})).check(0, 8, 2)
    with pytest.raises(ValueError, match="leaves fewer than its top-2"):
        LayerEdit(disabled=frozenset(range(7))).check(0, 8, 2)


def test_parse_ablate():
    assert parse_ablate("1:3,2:5").describe() == "disable expert 3 in layer 1; disable expert 5 in layer 2"
    assert parse_ablate(" *:0-2 , 1:7").plan(2) == {0: LayerEdit(disabled=frozenset({0, 1, 2})),
                                                   1: LayerEdit(disabled=frozenset({0, 1, 2, 7}))}
    for bad in ("", "3", "a:1", "1:2:3", "1:5-2"):
        with pytest.raises(ValueError, match="--ablate") as error:
            parse_ablate(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="no layer 4"):
        parse_ablate("4:1").plan(4)


def test_negative_layers_count_from_the_last_as_in_python():
    """`--ablate -1:3` disables expert 3 of the last layer (it was refused as "not '-1:3'"); beyond the
    first layer, one line says which layers there are."""
    assert parse_ablate("-1:3").plan(4) == {3: LayerEdit(disabled=frozenset({3}))}
    assert (parse_ablate("-4:1") | disable({-1: [2]}) | top_k(3, layers=[-2])).plan(4) == {
        0: LayerEdit(disabled=frozenset({1})), 3: LayerEdit(disabled=frozenset({2})), 2: LayerEdit(top_k=3)}
    with pytest.raises(ValueError) as error:
        parse_ablate("-5:1").plan(4)
    assert str(error.value) == "this model has layers 0..3 (-1 = the last): there is no layer -5"


def _model(layers: int = 2, experts: int = 4, k: int = 2):
    """A random gpt-oss of `layers` layers of `experts` experts (top-`k`), a few kilobytes."""
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(0)
    return GptOssForCausalLM(GptOssConfig(vocab_size=300, hidden_size=32, intermediate_size=32, num_attention_heads=2,
                                          num_key_value_heads=1, head_dim=16, num_hidden_layers=layers,
                                          num_local_experts=experts, num_experts_per_tok=k))


def test_the_router_hooks_read_layers_and_experts_as_the_routing_lab_does():
    """hooks.intervened(model, {-1: edit}) was refused as "this model has layers 0..1: there is no layer -1", where
    every other layer of the routing lab counts -1 from the last; a model without experts was told "layer 0 has
    experts 0..-1" and "top-k must be between 1 and 0"."""
    from gptoss_lab.engines.hooks import RouterHooks, check_plan, intervened

    model, edit = _model(), LayerEdit(disabled=frozenset({0, 1}))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with intervened(model, {-1: edit}), RouterHooks(model) as hooks, torch.inference_mode():
        model(ids)
        experts, _ = hooks.take()
    assert not np.isin(experts[:, 1], [0, 1]).any() and np.isin(experts[:, 0], [0, 1]).any()
    with pytest.raises(ValueError, match=r"^this model has layers 0..1 \(-1 = the last\): there is no layer 5$"):
        check_plan(model, {5: edit})
    with pytest.raises(ValueError, match=r"^layers 1 and -1 of this plan are the same layer: give it one edit$"):
        check_plan(model, {1: edit, -1: edit})
    empty = _model(experts=0)
    for intervention in (disable({0: [1]}), top_k(1), parse_ablate("-1:0")):
        with pytest.raises(ValueError, match=r"^layer [01] has no experts, so its routing cannot be changed$"):
            intervention.check(empty)


def test_ctrl_c_while_the_hooks_are_put_on_leaves_none(monkeypatch):
    """A Ctrl-C between two routers' hooks left the first router's edit (and the model marked as under an
    intervention) or its recording hook in place for good: every later turn routed, or was recorded, changed."""
    from gptoss_lab.engines.hooks import RouterHooks, intervened, intervention_on

    model = _model(layers=3)
    routers = [layer.mlp.router for layer in model.model.layers]
    monkeypatch.setattr(routers[1], "register_forward_hook", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    for putting_on in (lambda: intervened(model, {0: LayerEdit(top_k=1), 1: LayerEdit(top_k=1)}),
                       lambda: RouterHooks(model)):
        with pytest.raises(KeyboardInterrupt):
            with putting_on():
                pass
        assert [len(router._forward_hooks) for router in routers] == [0, 0, 0] and intervention_on(model) is None


def test_an_empty_slot_is_left_out_whether_the_experts_are_called_by_position_or_by_name():
    """The hooks that leave an emptied slot's expert out unpacked the experts' call as positional arguments: a call
    by name, `experts(hidden_states=..., router_indices=..., routing_weights=...)`, failed to unpack."""
    from gptoss_lab.engines.hooks import EMPTY, intervened

    model = _model()
    experts = model.model.layers[0].mlp.experts
    torch.manual_seed(1)
    hidden, indices = torch.randn(3, 32), torch.tensor([[1, EMPTY], [2, 3], [EMPTY, 3]])
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    with torch.no_grad():
        experts.down_proj[0] = float("nan")   # a corrupted expert, in no filled slot
        with intervened(model, {0: LayerEdit(disabled=frozenset({0}), replace=False)}):
            by_position = experts(hidden, indices, weights)
            by_name = experts(hidden_states=hidden, router_indices=indices, routing_weights=weights)
    assert torch.isfinite(by_position).all() and torch.equal(by_position, by_name)


def test_ablate_mistakes_are_settings_errors_and_huge_ranges_are_refused_at_once():
    """`%%gptoss --ablate` shows a SettingsError as one line (any other error is a traceback); an expert
    beyond what a record can hold is refused before a set of that many ids is built."""
    for bad, message in (("garbage", "not 'garbage'"), (",,", "needs LAYER:EXPERT pairs"),
                         ("1:3-1", "range 3-1 is empty"), ("0:40000", "there is no expert 40000"),
                         ("*:0-99999999999999999999", "there is no expert 99999999999999999999")):
        with pytest.raises(SettingsError, match=message):
            parse_ablate(bad)
    assert parse_ablate("0:32767").describe() == "disable expert 32767 in layer 0"


def test_combining_interventions():
    both = disable({0: [1]}) | force([(0, 2)]) | top_k(3, layers=[1])
    assert both.plan(2) == {0: LayerEdit(disabled=frozenset({1}), forced=frozenset({2})), 1: LayerEdit(top_k=3)}
    with pytest.raises(ValueError, match="top-k of layer 1"):
        top_k(3, layers=[1]) | top_k(4, layers=[1])
    assert repr(Intervention()) == "Intervention(no change)"
    # a layer named twice is one edit ("top-1 in layer 1; top-1 in layer 1", as if two things changed)
    assert top_k(1, layers=[1, 1, np.int64(1)]).describe() == "top-1 in layer 1"


def test_indices_that_are_not_whole_numbers_are_refused_not_rounded():
    """A float or a bool is not an expert, a layer or a top-k: 2.7 used to disable expert 2, True
    expert 1, and top_k(1.5) was accepted, then failed the turn inside torch."""
    for make, message in ((lambda: disable({1: [2.7]}), "expert must be a whole number, not 2.7"),
                          (lambda: force({1.5: [2]}), "layer must be a whole number, not 1.5"),
                          (lambda: disable({1: True}), "expert must be a whole number, not True"),
                          (lambda: disable([(0, "3")]), "expert must be a whole number, not '3'"),
                          (lambda: top_k(1.5), "top-k must be a whole number, not 1.5"),
                          (lambda: top_k(True), "top-k must be a whole number, not True"),
                          (lambda: top_k(1, layers=[True]), "layer must be a whole number, not True")):
        with pytest.raises(TypeError) as error:
            make()
        assert str(error.value) == message
    assert disable({np.int64(1): np.int64(3), None: range(2)}).describe() == (
        "disable expert 3 in layer 1; disable experts 0, 1 in every layer")


# ---------------------------------------------------------------- on gpt-oss-tiny


@pytest.fixture(scope="module")
def session():
    from gptoss_lab import Session

    return Session.load("tiny", progress=False, dtype="float32", session_options={"approval": "auto"})


def _answers(session, intervention=None):
    """Each question's generated tokens and final answer (fresh conversation, greedy)."""
    out = []
    for question in QUESTIONS:
        session.reset()
        if intervention is None:
            reply = session.ask(question, routing=True, temperature=0, max_new_tokens=150)
        else:
            with intervention.apply(session):
                reply = session.ask(question, routing=True, temperature=0, max_new_tokens=150)
        out.append((reply.routing.tokens.tolist(), reply.final))
    session.reset()
    return out


@pytest.fixture(scope="module")
def baseline(session):
    return _answers(session)


def test_a_no_op_intervention_changes_nothing(session, baseline):
    """top-2 on every layer of a top-2 model runs every router through the intervention hooks."""
    assert all(final for _, final in baseline)
    assert _answers(session, top_k(2)) == baseline  # the same tokens, one for one


def test_a_no_op_compared_with_sampling_changes_nothing(session):
    """compare samples both turns from one seed when given a temperature and none: each drew on from where the other
    left torch's generator, and a no-op intervention "changed" the answer."""
    torch.manual_seed(0)
    effect = top_k(2).compare(session, "Tell me a short story about a cat.", temperature=1.5, max_new_tokens=25)
    assert not effect.changed and effect.baseline.routing.tokens.tolist() == effect.intervened.routing.tokens.tolist()


def test_an_ablation_changes_the_answers(session, baseline):
    ablated = _answers(session, parse_ablate("*:0-3"))  # half the experts of every layer
    changed = [b != a for (b, _), (a, _) in zip(baseline, ablated)]
    assert sum(changed) >= 2, ablated


def test_session_ask_intervene(session, baseline):
    """`Session.ask(..., intervene=...)` (what `%%gptoss --ablate` uses) applies it for that turn only."""
    session.reset()
    same = session.ask(QUESTIONS[0], intervene=top_k(2), routing=True, temperature=0, max_new_tokens=150)
    session.reset()
    ablated = session.ask(QUESTIONS[0], intervene=parse_ablate("*:0-3"), routing=True, temperature=0, max_new_tokens=150)
    session.reset()
    after = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=150)
    session.reset()
    assert (same.routing.tokens.tolist(), same.final) == baseline[0]
    assert ablated.routing.tokens.tolist() != baseline[0][0]
    assert (after.routing.tokens.tolist(), after.final) == baseline[0]  # nothing left behind
    # every form of the ablated turn says its routing was changed (a saved answer read as the model's own); a plain
    # turn's does not
    from gptoss_lab.widgets.transcript import Transcript

    said = "routing changed: disable experts 0, 1, 2, 3 in every layer"
    assert ablated.intervention == said.split(": ", 1)[1]
    shown = Transcript.from_reply(ablated)
    assert all(said in form for form in (shown.to_text(), shown.to_markdown(), shown.to_html())), said
    plain = Transcript.from_reply(after)
    assert after.intervention == "" and "routing changed" not in plain.to_text() + plain.to_html()


def test_a_saved_record_of_an_ablated_turn_says_so_when_read_back(session, tmp_path):
    """`reply.routing.save(path)` of an `--ablate` turn wrote no word of it: read back (or a part of it), the
    ablated routing passed for the model's own."""
    from gptoss_lab.routing import load

    session.reset()
    ablated = session.ask(QUESTIONS[0], intervene=parse_ablate("1:3"), routing=True, temperature=0, max_new_tokens=8)
    plain = session.ask(QUESTIONS[1], routing=True, temperature=0, max_new_tokens=8)
    session.reset()
    back = load(ablated.routing.save(tmp_path / "ablated"))
    for record in (ablated.routing, back, back.select(slice(0, 5)), load(back.save(tmp_path / "again"))):
        assert record.intervention == "disable expert 3 in layer 1"
        assert repr(record).endswith("; routed under an intervention: disable expert 3 in layer 1)")
    mine = load(plain.routing.save(tmp_path / "plain"))
    assert mine.intervention == "" and "intervention" not in repr(mine)


def test_a_turn_asked_inside_apply_says_its_routing_was_changed(session, tmp_path):
    """A turn asked inside `with disable(...).apply(session)` (or `apply(model)`) had intervention "": its footer said
    nothing and its record, saved and read back, passed for the model's own routing (as `intervene=` turns do not)."""
    from gptoss_lab.routing import load

    session.reset()
    for target in (session, session.engine.model):
        with disable({1: [3]}).apply(target):
            under = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=8)
        assert under.intervention == "disable expert 3 in layer 1"
        assert load(under.routing.save(tmp_path / "under")).intervention == "disable expert 3 in layer 1"
    after = session.ask(QUESTIONS[1], routing=True, temperature=0, max_new_tokens=8)
    session.reset()
    assert after.intervention == "" and after.routing.intervention == ""


def test_check_says_in_one_line_what_the_loaded_model_does_not_have(session):
    assert set(parse_ablate("*:0").check(session)) == {0, 1, 2, 3}
    for spec, message in (("9:1", r"this model has layers 0..3 \(-1 = the last\): there is no layer 9"),
                          ("1:8", "layer 1 has experts 0..7: there is no expert 8")):
        with pytest.raises(ValueError, match=message):
            parse_ablate(spec).check(session)


def test_the_kv_cache_is_not_shared_across_an_intervention(session):
    engine = session.engine
    engine.reset()  # nothing cached: the first turn computes its whole prompt
    session.reset()
    session.ask(QUESTIONS[0], temperature=0, max_new_tokens=20)
    prompt_before = engine.last_prefill
    session.reset()
    session.ask(QUESTIONS[0], temperature=0, max_new_tokens=20)
    assert engine.last_prefill < prompt_before  # without an intervention the system prefix is reused
    session.reset()
    with disable({1: [2]}).apply(session):
        session.ask(QUESTIONS[0], temperature=0, max_new_tokens=20)
        assert engine.last_prefill == prompt_before  # nothing computed without it is reused
    session.reset()
    session.ask(QUESTIONS[0], temperature=0, max_new_tokens=20)
    assert engine.last_prefill == prompt_before  # nor what was computed under it
    session.reset()


def test_an_intervention_applied_to_the_model_itself_neither_reuses_nor_leaves_a_cache(session):
    """`apply(model)` bypasses the engine's reset: a turn under it reused the positions of the turn before (computed,
    and recorded, with the disabled experts), and the turn after it reused the positions computed under it."""
    from gptoss_lab.engines.hooks import teacher_forced

    model, intervention = session.engine.model, disable({None: [0, 1, 2]})

    def routed_as(reply, plan):  # what the model routes for the reply's tokens, computed afresh
        experts = teacher_forced(model, reply.routing.tokens.tolist(), [1], plan)[1]
        return np.array_equal(np.sort(experts, -1), np.sort(reply.routing.experts, -1))

    session.reset()
    session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=8)
    with intervention.apply(model):
        under = session.ask(QUESTIONS[1], routing=True, temperature=0, max_new_tokens=8)
    after = session.ask(QUESTIONS[2], routing=True, temperature=0, max_new_tokens=8)
    session.reset()
    assert not np.isin(under.routing.experts, [0, 1, 2]).any()
    assert routed_as(under, intervention.check(model)) and routed_as(after, None)


def test_recorded_routing_is_the_changed_routing(session):
    session.reset()
    with (disable({1: [2]}) | top_k(1, layers=[0])).apply(session):
        routing = session.ask(QUESTIONS[2], routing=True, temperature=0, max_new_tokens=30).routing
        with pytest.raises(RuntimeError, match="already under an intervention"):
            with top_k(2).apply(session):
                pass
    session.reset()
    assert (routing.experts[:, 1] != 2).all()                 # never routed to the disabled expert
    assert (routing.experts[:, 0, 1] == -1).all()             # layer 0 picked one expert: an empty slot
    assert routing.load().counts[0].sum() == len(routing)     # ... that is never counted
    hooks = [r._forward_hooks for r in session.engine.model.modules() if type(r).__name__ == "GptOssTopKRouter"]
    assert all(not any("_edit_hook" in getattr(h, "__qualname__", "") for h in d.values()) for d in hooks)


def test_compare_shows_answers_probabilities_and_route_changes(session):
    history = list(session.history)
    effect = parse_ablate("*:0-3").compare(session, QUESTIONS[0], max_new_tokens=150)
    assert session.history == history  # the conversation is left as it was
    assert effect.changed and effect.baseline.final != effect.intervened.final
    p = effect.probabilities
    assert p.loc["answer without", "P without"] > p.loc["answer without", "P with"]  # the right answer got less likely
    assert (effect.changes["layers_changed"] > 0).any() and effect.agreement["overlap"].min() < 1
    text = repr(effect)
    assert "disable experts 0, 1, 2, 3 in every layer" in text and "answer tokens" in text
    html = effect._repr_html_()
    assert "<script" not in html and "changed route" in html
    # one rule for positions: a changed token's position is its index in the reply's whole record, as token_effect's
    # (counted from the turn, changed token 73 read in the record, or in token_effect's rows, was the system message's)
    moved = effect.changed_tokens(5)
    assert moved.index.name == "position" and "<th>position</th>" in html
    for record in (effect.baseline.routing, effect.routing[0]):
        assert [record.strings[p] for p in moved.index] == moved["text"].tolist()
    per_token = parse_ablate("*:0-3").token_effect(session, effect.baseline.routing).set_index("position")
    assert per_token.loc[moved.index, "text"].tolist() == moved["text"].tolist()
    figure = effect.plot()   # notebook 07: the "answer" legend was drawn over the grid's first tokens
    assert figure.axes[0].get_xlim()[0] == effect.changes.index[0] - 0.5  # drawn at those positions
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    legend = figure.axes[0].get_legend().get_window_extent(renderer)
    covered = [ax.get_title() for ax in figure.axes if legend.overlaps(ax.get_window_extent(renderer))]
    assert not covered and figure.bbox.contains(legend.x1, legend.y1), (legend, covered)   # on no panel, in the picture
    # notebook 07 (81 tokens): the grid's axis label ran into the overlap panel's ("...intervention)op-k overlap")
    crossed = [(ax.get_xlabel(), other.get_xlabel()) for ax in figure.axes for other in figure.axes if other is not ax
               and ax.xaxis.label.get_window_extent(renderer).overlaps(other.get_tightbbox(renderer))]
    assert not crossed, crossed


def test_compare_keeps_the_conversation_so_that_regenerate_asks_the_users_question(session):
    """compare asks twice and puts the conversation back: `regenerate` (and `rewind`) then act on the
    user's own last turn, not on compare's (which dropped the user's answer and asked their question twice)."""
    session.reset()
    mine = session.ask(QUESTIONS[1], temperature=0, max_new_tokens=150)
    history = list(session.history)
    disable({1: [2]}).compare(session, QUESTIONS[0], max_new_tokens=150)
    assert session.history == history and session.replies == [mine]
    again = session.regenerate()
    assert again.prompt == QUESTIONS[1] and session.replies == [again]
    assert [m for m in session.history if m.author.role.value == "user"] == history[:1]  # asked once, not twice
    session.reset()


def test_compare_under_approval_ask_says_it_cannot_ask_instead_of_measuring_skipped_calls(session):
    """Under approval='ask' both answers measured a turn whose python call was skipped ("nobody could give it"),
    with nothing to say why (a new user's review)."""
    history = list(session.history)
    with pytest.raises(ValueError, match=r"^compare: the model called python, which needs approval, and compare "
                                         r"cannot ask: give approval='auto'"):
        disable({1: [3]}).compare(session, QUESTIONS[0], max_new_tokens=150, approval="ask")
    assert session.history == history
    assert disable({1: [3]}).compare(session, QUESTIONS[0], max_new_tokens=150).baseline.tool_calls


def test_compare_in_a_conversation_measures_this_turns_answer_and_keeps_the_conversation(session):
    """After an earlier turn, compare counted that turn's answer as part of the new one ("8 of the 16 answer tokens":
    37 * 12 = 444. too), and `new=True`, the way round it, forgot the user's conversation and kept compare's turn
    (a researcher's review)."""
    session.reset()
    fresh = disable({1: [0]}).compare(session, QUESTIONS[2], max_new_tokens=150)
    mine = session.ask(QUESTIONS[0], temperature=0, max_new_tokens=150)
    later = disable({1: [0]}).compare(session, QUESTIONS[2], max_new_tokens=150)
    assert later.changes["label"].tolist().count("final") == fresh.changes["label"].tolist().count("final")
    assert "444" not in "".join(later.changes["text"]) and len(later.changes) < 2 * len(fresh.changes)
    assert abs(later.probabilities.loc["answer without", "P without"]
               - fresh.probabilities.loc["answer without", "P without"]) < 0.05
    with pytest.raises(ValueError, match="^compare: new=True would forget your conversation"):
        disable({1: [0]}).compare(session, QUESTIONS[2], new=True)
    assert session.replies == [mine]
    session.reset()


def test_a_top_k_intervention_reports_the_experts_it_took_away(session):
    """Both routings were cut to the smaller top-k before comparing: top_k(1) reported full agreement (overlap 1.0,
    same set 1.0) in every layer, where each token lost its second expert."""
    session.reset()
    effect = top_k(1).compare(session, QUESTIONS[2], max_new_tokens=150)
    assert (effect.agreement["same_set"] == 0).all() and (effect.agreement["overlap"] < 0.6).all()
    assert (effect.changes["layers_changed"] == session.engine.model.config.num_hidden_layers).all()


def test_ctrl_c_stops_compare_and_token_effect_in_one_line(session, monkeypatch, ctrl_c_raises):
    """Ctrl-C ends a turn with its Reply, so compare went on: it asked again and measured the cut (empty) answer as the
    answer without; in its measuring, or in token_effect over many records, it was a traceback through torch. Each
    now stops with one line saying what was kept (token_effect: the rows of the records done), the conversation as
    it was."""
    import signal

    from gptoss_lab.engines.hooks import model_of
    from gptoss_lab.routing import interventions

    session.reset()
    mine = session.ask(QUESTIONS[1], temperature=0, max_new_tokens=8)
    passes = [0, 3]   # forward passes so far, and the one Ctrl-C is pressed in

    def press(*args, **kwargs):
        passes[0] += 1
        if passes[0] == passes[1]:
            signal.raise_signal(signal.SIGINT)

    handle = model_of(session)[1].model.layers[-1].mlp.router.register_forward_hook(press)   # once a forward pass
    try:
        with pytest.raises(KeyboardInterrupt) as in_turn:
            disable({1: [2]}).compare(session, QUESTIONS[0], max_new_tokens=150)
    finally:
        handle.remove()
    real = interventions.teacher_forced
    monkeypatch.setattr(interventions, "teacher_forced", lambda *a, **k: (press(), real(*a, **k))[1])
    reply = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=8)
    passes[:] = [0, 3]   # the first record's two passes, then the second's first
    with pytest.raises(KeyboardInterrupt) as effect:
        top_k(2).token_effect(session, [reply.routing] * 3)
    passes[:] = [0, 1]
    with pytest.raises(KeyboardInterrupt) as measuring:
        disable({1: [2]}).compare(session, QUESTIONS[0], max_new_tokens=8)
    assert in_turn.value._render_traceback_() == ["Interrupted: compare stopped (Ctrl-C) in the turn without the "
                                                  "intervention: nothing was measured, and the conversation is as it was"]
    assert measuring.value._render_traceback_() == ["Interrupted: compare stopped (Ctrl-C) while measuring the two "
                                                    "answers: nothing was measured, and the conversation is as it was"]
    assert effect.value._render_traceback_() == [
        "Interrupted: token_effect stopped (Ctrl-C) after 1 of 3 records: the rows of the records measured are kept in "
        "this error's .kept (in a notebook: sys.last_value.kept)"]
    assert effect.value.kept["document"].unique().tolist() == [0] and len(effect.value.kept) == len(reply.routing) - 1
    assert session.replies == [mine, reply]
    session.reset()


def test_token_effect(session):
    session.reset()
    reply = session.ask(QUESTIONS[1], routing=True, temperature=0, max_new_tokens=100)
    session.reset()
    same = top_k(2).token_effect(session, reply.routing)
    assert len(same) == len(reply.routing) - 1 and same["change"].abs().max() < 1e-4
    assert same["position"].tolist() == list(range(1, len(reply.routing)))
    hurt = parse_ablate("*:0-3").token_effect(session, [reply.routing, reply.routing.tokens[:50].tolist()])
    assert hurt["document"].value_counts().to_dict() == {0: len(reply.routing) - 1, 1: 49}
    assert hurt.loc[hurt["label"] == "final", "change"].mean() < -0.1
    assert hurt.plot().axes
    with pytest.raises(TypeError, match="not text: route it first"):
        top_k(2).token_effect(session, "What is 2 + 2?")  # was "invalid literal for int() with base 10: 'W'"
    records = [Routing(), reply.routing.select(slice(0, 1)), reply.routing.select(slice(0, 3))]
    short = top_k(2).token_effect(session, records)
    assert short["document"].tolist() == [2, 2] and short["position"].tolist() == [1, 2]  # an empty text has no rows


def test_token_effect_on_several_records_shows_its_progress(session, capsys):
    """Two forward passes a record: notebook 07's four conversations sat 15 s with no word (a Corpus, minutes)."""
    reply = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=60, new=True)
    top_k(2).token_effect(session, reply.routing)
    assert capsys.readouterr().out == ""   # one record: no bar
    top_k(2).token_effect(session, [reply.routing.tokens[:40].tolist()] * 3)
    assert "token effect: 100%" in capsys.readouterr().out


@pytest.mark.parametrize("records, message", [
    ([True, False, True], "token ids are whole numbers, not True"),  # were tokens 1, 0, 1
    ([[1.7, 2, 3]], "token ids are whole numbers, not 1.7"),  # was token 1
    (np.array([1.5, 2.0]), "token ids are whole numbers, not 1.5"),  # "'numpy.float64' is not iterable"
    (b"abc", "not b'abc' (bytes)"),  # were tokens 97, 98, 99
    (5, "not 5 (int)"),  # "object of type 'int' has no len()"
    ({1: 2, 3: 4}, "several Routings (a Corpus, a list), not a dict"),  # KeyError: 0
    ([[1, 2, 3], "ab"], "not 'ab' (str) among them"),  # "invalid literal for int() with base 10: 'a'"
])
def test_token_effect_refuses_records_that_are_no_token_ids_in_one_line(session, records, message):
    with pytest.raises(TypeError, match=re.escape(message)) as error:
        top_k(2).token_effect(session, records)
    assert "\n" not in str(error.value)


def test_token_effect_takes_a_generator_of_records(session):
    ids = harmony.encode_text("The quick brown fox jumps over the lazy dog.")
    table = top_k(2).token_effect(session, (list(ids) for _ in range(2)))  # "object of type 'generator' has no len()"
    assert table["document"].value_counts().to_dict() == {0: len(ids) - 1, 1: len(ids) - 1}


def test_interventions_need_a_model_in_the_kernel():
    from gptoss_lab import ReplayEngine

    with pytest.raises(ValueError, match="has none: load one"):
        with top_k(1).apply(ReplayEngine("<|channel|>final<|message|>hi<|return|>")):
            pass


def test_a_slot_left_empty_is_recorded_empty(session):
    """`disable(..., replace=False)`: the disabled expert computes nothing, so the record shows no expert there."""
    session.reset()
    plain = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=20).routing
    busiest = int(np.bincount(plain.experts[:, 1].ravel()[plain.experts[:, 1].ravel() >= 0]).argmax())
    session.reset()
    emptied = session.ask(QUESTIONS[0], intervene=disable({1: [busiest]}, replace=False), routing=True,
                          temperature=0, max_new_tokens=20).routing
    session.reset()
    layer = emptied.experts[:, 1]
    assert busiest not in set(layer.ravel().tolist()) and (layer == -1).any()
    assert np.all(emptied.weights[:, 1][layer == -1] == 0) and (emptied.experts[:, 0] >= 0).all()


def test_an_expert_left_out_of_its_slot_is_not_computed(session):
    """`disable(..., replace=False)` still ran the expert on the tokens routed to it, at gate weight 0: a NaN in its
    weights (a corrupted expert) made the turn's logits NaN through 0 * NaN. An empty slot now computes nothing, in the
    lean forward (prefill, decode) and transformers' (teacher forcing): the turn is the one the healthy expert gave."""
    from gptoss_lab.engines.hooks import teacher_forced

    session.reset()
    plain = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=40)
    ids, layer = plain.routing.tokens.tolist(), plain.routing.experts[:, 0].ravel()
    busiest = int(np.bincount(layer[layer >= 0]).argmax())
    ablate, model = disable({0: [busiest]}, replace=False), session.engine.model
    assert session.engine.slow_path_reason is None   # the lean forward answers; teacher forcing is transformers'

    def measured():
        session.reset()
        with ablate.apply(session):
            turn = session.ask(QUESTIONS[0], routing=True, temperature=0, max_new_tokens=40).routing.tokens.tolist()
        return turn, teacher_forced(model, ids, list(range(1, len(ids))), ablate.check(model))[0]

    healthy = measured()
    down = model.model.layers[0].mlp.experts.down_proj
    kept = down.detach()[busiest].clone()
    try:
        with torch.no_grad():
            down[busiest] = float("nan")
        corrupted = measured()
    finally:
        with torch.no_grad():
            down[busiest] = kept
        session.reset()
    assert corrupted[0] == healthy[0]   # the tokens the turn wrote
    assert np.isfinite(corrupted[1]).all() and np.array_equal(corrupted[1], healthy[1])


def test_a_layer_counted_from_the_last_is_described_as_such():
    """A reply's footer read "disable expert 7 in layer -1", as if the model had a layer numbered -1."""
    assert parse_ablate("-1:7").describe() == "disable expert 7 in the last layer"
    assert parse_ablate("-2:1,0:3").describe() == "disable expert 1 in layer -2 (from the last); disable expert 3 in layer 0"


def test_under_force_or_an_empty_slot_the_top_1_analyses_read_the_heaviest_expert(session):
    """A forced expert was recorded in slot 0 with the smaller weight in every token (mean 0.10), so hot_and_cold
    called it hot and transitions sent every token out of it; with replace=False the empty slot stood first
    (transitions counted 136 of 232 tokens). Slots are now in order of weight, empty ones last."""
    session.reset()
    with force({2: [6]}).apply(session):
        forced = session.ask(QUESTIONS[2], routing=True, temperature=0, max_new_tokens=150).routing
    weights = np.asarray(forced.weights)
    assert (weights[:, :, 0] >= weights[:, :, 1]).all() and (np.asarray(forced.experts)[:, 2, :] == 6).any(-1).all()
    with disable({1: [0]}, replace=False).apply(session):
        emptied = session.ask(QUESTIONS[2], routing=True, temperature=0, max_new_tokens=150).routing
    first = np.asarray(emptied.experts)[:, 1, 0]
    assert (first >= 0).all() and int(emptied.transitions(0).to_numpy().sum()) == len(emptied)
    session.reset()


@pytest.mark.parametrize("given, said", [(5, "5 (int)"), (["1:3"], "['1:3'] (list)")])
def test_parse_ablate_of_no_text_is_one_line(given, said):
    """`parse_ablate(5)` raised "AttributeError: 'int' object has no attribute 'split'" (a researcher's review)."""
    with pytest.raises(ValueError, match=rf'^--ablate takes text, LAYER:EXPERT pairs \(e.g. "1:3,2:5"\), not '
                                         rf'{re.escape(said)}$'):
        parse_ablate(given)


def test_routing_load_of_a_path_says_which_load_reads_a_folder(tmp_path):
    """`Routing.load(path)` is the load analysis (a method): "load takes a Routing record, not '…' (str)" said nothing
    of the function that reads a saved record."""
    with pytest.raises(TypeError, match=r"not '.*' \(str\): to read a saved record, gptoss_lab.routing.load\(path\)"):
        Routing.load(str(tmp_path))


def test_an_effect_exported_to_markdown_shows_the_answers_as_written():
    """`jupyter nbconvert --to markdown` writes an Effect's HTML into the Markdown as it is: a blank line in an answer
    ended that HTML block and the rest was read as Markdown (the answer's `![t](…)` fetched an image where the
    Markdown was shown, its `**` made bold). The HTML has no blank line: the answer reads as the model wrote it."""
    from types import SimpleNamespace

    import nbformat
    import pandas as pd
    from markdown_it import MarkdownIt
    from nbconvert import MarkdownExporter

    from gptoss_lab.routing.analysis import Frame
    from gptoss_lab.routing.interventions import Effect

    hostile = "![t](https://evil.example/pixel.png) **bold**"
    changes = Frame({"text": ["a"], "label": ["final"], "layers_changed": [1], "top1_changed": [1]})
    answers = SimpleNamespace(final=f"ok\n\n \n{hostile}"), SimpleNamespace(final="fine")
    effect = Effect(parse_ablate("*:0-3"), "Hi", *answers, pd.DataFrame({"P without": [0.5]}), changes,
                    Frame({"overlap": [1.0]}))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("effect", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": effect._repr_html_(), "text/plain": repr(effect)})])])
    shown = MarkdownIt("commonmark", {"html": True}).render(MarkdownExporter().from_notebook_node(notebook)[0])
    assert "<img" not in shown and "<strong>" not in shown and hostile in shown, shown


def test_an_effects_html_writes_the_models_controls_out():
    """The Effect's HTML put the model's answers and the labels in as they were: an answer's ESC sequence went raw into
    the saved notebook (a terminal obeys it in `nbconvert --to markdown --stdout`), its U+202E reversed the cell."""
    from types import SimpleNamespace

    import pandas as pd

    from gptoss_lab.routing import Effect

    ids = np.array([[[0, 1]], [[1, 2]], [[2, 0]]])
    r = Routing([11, 12, 11], ids, np.full((3, 1, 2), 0.5), ["final", "a\x1bb", "final"], num_experts=3)
    moved = Routing(r.tokens, (ids + 1) % 3, r.weights, r.labels, num_experts=3)
    answer = SimpleNamespace(final="4\x1b[2J2 \u202eyes", routing=r)
    html = Effect(disable({0: [1]}), "q", answer, answer, pd.DataFrame({"P without": [0.5]}, index=["answer without"]),
                  r.route_changes(moved), r.agreement(moved), (r, moved))._repr_html_()
    assert "\x1b" not in html and "\u202e" not in html
    assert "4\\x1b[2J2 \\u202eyes" in html and "a\\x1bb" in html
