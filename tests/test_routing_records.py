"""Routing records as a researcher meets them: damaged data refused in one line rather than stored as
plausible numbers, two records compared only when their expert ids mean the same experts, and every
record folder read back memory-mapped."""
from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from gptoss_lab import harmony
from gptoss_lab.routing import Corpus, Routing, load


def _routing(weights: np.ndarray, num_experts: int = 4) -> Routing:
    return Routing(np.arange(1, len(weights) + 1), np.zeros(weights.shape, int), weights, num_experts=num_experts)


@pytest.mark.parametrize("value, shown", [(np.nan, "nan"), (np.inf, "inf"), (1.7, "1.7"), (-0.25, "-0.25")])
def test_a_gate_weight_that_is_no_share_is_refused_on_save(tmp_path, value, shown):
    """A NaN gate weight (a router that produced NaN) was saved as 0, 1.7 as 1: plausible numbers on
    reload. Saving is refused in one line naming the token and layer, and the folder keeps the record
    it held (the writer empties it when it opens)."""
    good = _routing(np.full((3, 2, 2), 0.5, np.float32))
    good.save(tmp_path / "r")
    weights = np.full((3, 2, 2), 0.5, np.float32)
    weights[2, 1, 0] = value
    for record in (_routing(weights), Corpus(_routing(weights), [0, 1, 3])):
        with pytest.raises(ValueError) as error:
            record.save(tmp_path / "r")
        assert str(error.value) == (f"token 2 has gate weight {shown} in layer 1, not a share in 0..1 "
                                    f"(did the router produce NaN?): a routing record cannot hold it")
    assert len(load(tmp_path / "r")) == 3  # the record saved before is still there


def test_gate_weights_that_round_into_0_to_1_are_kept(tmp_path):
    """Softmax in float32 can sum past 1 by a rounding step: such a weight is saved, not refused."""
    weights = np.full((2, 1, 2), 0.5, np.float32)
    weights[0, 0] = [np.nextafter(np.float32(1), np.float32(2)), -0.0]
    assert load(_routing(weights).save(tmp_path / "r")).weights[0, 0].tolist() == [1.0, 0.0]


def test_agreement_refuses_records_of_different_models():
    """Expert 3 of an 8-expert model is not expert 3 of a 4-expert one: agreement and route_changes
    returned numbers for them; they refuse in one line saying what differs, each in its own name (route_changes said
    "agreement compares ..." and "agreement needs ...")."""
    a = _routing(np.full((2, 2, 2), 0.5), num_experts=4)
    b = _routing(np.full((2, 2, 2), 0.5), num_experts=8)
    three = Routing(a.tokens, np.zeros((2, 3, 2), int), np.full((2, 3, 2), 0.5), num_experts=8)
    for compare, name in ((a.agreement, "agreement"), (a.route_changes, "route_changes")):
        with pytest.raises(ValueError, match=rf"^the records differ in experts \(4 and 8\): {name} compares two "
                                             r"routings of the same model$"):
            compare(b)
        with pytest.raises(ValueError, match=r"^the records differ in layers \(2 and 3\) and experts \(4 and 8\)"):
            compare(three)
        with pytest.raises(ValueError, match=rf"^{name} needs two records of the same tokens \(route the same texts "
                                             r"or ids twice\)$"):
            compare(a.select(slice(0, 1)))
    inferred = Routing(a.tokens, np.full((2, 2, 2), 2), np.full((2, 2, 2), 0.5))  # 3 experts seen, count unknown
    assert inferred.agreement(a)["overlap"].tolist() == [0.0, 0.0]  # may be the same 4-expert model
    with pytest.raises(ValueError, match=r"differ in experts \(3 and 2\)"):  # it saw an expert the other lacks
        inferred.agreement(Routing(a.tokens, np.zeros((2, 2, 2), int), np.full((2, 2, 2), 0.5), num_experts=2))


@pytest.mark.parametrize("num_experts, dtype", [(128, np.int8), (300, np.int16)])
def test_a_record_with_empty_slots_loads_memory_mapped(tmp_path, num_experts, dtype):
    """Empty slots (-1: a top-k intervention left a layer fewer picks) are stored as the all-ones id: loading
    converted every expert id to an in-memory int16 copy (twice the file, for records larger than memory),
    where every other record is memory-mapped. Read as signed integers, the all-ones id is -1 as it is."""
    experts = np.array([[[0, -1], [1, num_experts - 1]], [[num_experts - 1, 0], [-1, -1]]])
    weights = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.5, 0.5], [0.0, 0.0]]])
    r = Routing([5, 6], experts, weights, ["text"] * 2, num_experts=num_experts)
    back = load(r.save(tmp_path / "r"))
    assert isinstance(back.experts, np.memmap) and back.experts.dtype == dtype
    assert back.experts.tolist() == experts.tolist()
    assert back.load().counts.tolist() == r.load().counts.tolist()
    assert back.agreement(r).values.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


def test_a_token_with_no_experts_in_both_records_agrees():
    """Every expert of a layer disabled (`disable(..., replace=False)`) leaves a token no experts: a record
    agreed with itself on only half of that layer's experts (an overlap of 0 for such tokens)."""
    experts = np.array([[[0, 1], [-1, -1]], [[2, 3], [1, 2]]])
    r = Routing([5, 6], experts, np.where(experts >= 0, 0.5, 0.0), num_experts=4)
    assert r.agreement(r).values.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    other = Routing([5, 6], np.array([[[0, 1], [2, -1]], [[2, 3], [1, 2]]]), np.full((2, 2, 2), 0.5), num_experts=4)
    assert r.agreement(other)["overlap"].tolist() == [1.0, 0.5]  # none against some: no agreement


def test_records_of_no_layers_and_of_no_tokens_keep_their_shape(tmp_path):
    """A record of 0 layers (or top-0) saved but failed to load with numpy's "zero-size array to reduction
    operation maximum"; a record made of no tokens in a given shape was one of 0 layers × top-0."""
    flat = Routing([1], np.zeros((1, 0, 2), int), np.zeros((1, 0, 2)), num_experts=4)
    assert repr(load(flat.save(tmp_path / "flat"))).startswith("Routing(1 token × 0 layers × top-2 of 4 experts")
    one = Routing([1], np.zeros((1, 1, 1), int), np.ones((1, 1, 1)), num_experts=1)   # `r.select([i])`: "1 tokens"
    assert repr(one) == "Routing(1 token × 1 layer × top-1 of 1 expert)"  # no labels: "; ? 1" at its end
    one.append([2], np.zeros((1, 1, 1), int), np.ones((1, 1, 1)), ["text"])
    assert repr(one) == "Routing(2 tokens × 1 layer × top-1 of 1 expert; unlabelled 1, text 1)"
    empty = Routing([], np.zeros((0, 3, 2), int), np.zeros((0, 3, 2)), num_experts=4)
    assert repr(empty) == "Routing(0 tokens × 3 layers × top-2 of 4 experts)"
    assert repr(load(empty.save(tmp_path / "empty"))) == "Routing(0 tokens × 3 layers × top-2 of 4 experts)"


def test_ids_no_record_can_hold_are_refused_when_added():
    """Expert id 2.7 was cut to 2 and NaN became expert 0; token id 1.9 became 1; token -5 saved, then the
    record was refused on load; num_experts=40000 let id 35000 wrap to a negative int16 (numpy's "'list'
    argument must have no negative elements" in every analysis)."""
    weights = np.full((1, 1, 2), 0.5)
    for experts, shown in ((2.7, "2.7"), (np.nan, "nan")):
        with pytest.raises(ValueError, match=rf"^expert ids are whole numbers \(-1 = an empty slot\), not {shown}$"):
            Routing([1], np.array([[[experts, 1.0]]]), weights, num_experts=4)
    assert Routing([1], np.array([[[2.0, 1.0]]]), weights, num_experts=4).experts.tolist() == [[[2, 1]]]
    for tokens, why, error in (([-5], "go from 0 to 201087 (the Harmony vocabulary), not -5", ValueError),
                               ([2**40], "go from 0 to 201087 (the Harmony vocabulary), not 1099511627776", ValueError),
                               ([1.9], "are whole numbers, not 1.9", TypeError),  # as route says it
                               ([1, 2**70], "go from 0 to 201087 (the Harmony vocabulary), not 1180591620717411303424",
                                ValueError)):
        with pytest.raises(error, match=rf"^token ids {re.escape(why)}$"):
            Routing(tokens, np.array([[[0, 1]]]), weights, num_experts=4)
    with pytest.raises(ValueError, match=r"^num_experts must be from 0 to 32768, not 40000$"):
        Routing([1], np.array([[[35000, 1]]]), weights, num_experts=40000)
    with pytest.raises(TypeError, match=r"^num_experts must be a whole number, not 2.5$"):
        Routing(num_experts=2.5)
    r = Routing([1], np.array([[[3, 1]]]), weights)
    with pytest.raises(ValueError, match=r"^num_experts must be from 4 to 32768, not 2 \(this record has expert 3\)$"):
        r.num_experts = 2  # expert 3 would be counted in the next layer
    with pytest.raises(ValueError, match=r"^need experts and weights of shape \[2, layers, k\] for 2 tokens$"):
        Routing([1, 2])


def test_every_record_that_saves_loads_back(tmp_path):
    """A record of no tokens, or of only empty slots, saved with an expert count of 0 (none seen) that
    load refused ("meta.json has num_experts = 0")."""
    assert len(load(Routing().save(tmp_path / "none"))) == 0
    emptied = Routing([1, 2], np.full((2, 1, 2), -1), np.zeros((2, 1, 2)))  # every expert disabled
    back = load(emptied.save(tmp_path / "emptied"))
    assert back.experts.tolist() == emptied.experts.tolist() and back.num_experts == 0


def test_a_corpus_is_checked_when_made():
    """Offsets past the last token cut the last text short without a word; a label count that does not match
    the texts failed later in numpy ("operands could not be broadcast together")."""
    r = _routing(np.full((3, 1, 2), 0.5))
    for offsets in ([0, 5], [0, 1], [0, 2, 1, 3], [1, 3], []):
        with pytest.raises(ValueError, match=r"^offsets must rise from 0 to 3, the tokens of combined$"):
            Corpus(r, offsets)
    with pytest.raises(ValueError, match=r"^1 label for 2 texts: give one label per text$"):
        Corpus(r, [0, 1, 3], ["x"])
    assert Corpus(r, [0, 0, 3], [np.int64(7), None]).doc_labels == ["7", None]  # labels are text, as on disk


def test_saving_a_part_of_a_loaded_corpus_describes_the_part(tmp_path):
    """A loaded corpus's meta holds the record's own sizes; saved with a part of its texts, those old
    sizes overrode the new ones in meta.json and the new record was refused on load."""
    whole = Corpus(_routing(np.full((3, 1, 2), 0.5)), [0, 1, 3], ["a", "b"], {"model": "tiny"})
    loaded = Corpus.load(whole.save(tmp_path / "whole"))
    part = Corpus(loaded[1], [0, 2], ["b"], loaded.meta)
    back = Corpus.load(part.save(tmp_path / "part"))
    assert len(back.combined) == 2 and back.doc_labels == ["b"] and back.meta["model"] == "tiny"


def test_meta_that_is_no_json_is_refused_before_anything_is_written(tmp_path):
    """meta.json is written last: meta it cannot hold failed there, after the folder's old record had been
    written over, leaving new columns under the old meta.json (a record refused on load)."""
    Corpus(_routing(np.full((3, 1, 2), 0.5)), [0, 3]).save(tmp_path / "c")
    with pytest.raises(TypeError, match=r"^a routing record's meta must be JSON data: Object of type object is not"):
        Corpus(_routing(np.full((2, 1, 2), 0.5)), [0, 2], meta={"model": object()}).save(tmp_path / "c")
    assert len(Corpus.load(tmp_path / "c").combined) == 3  # the old record, whole


def test_per_token_labels_of_another_length_are_refused():
    """A Categorical of labels (what `Corpus.token_labels` gives) was not checked against the record: 16
    labels for 10 tokens gave numbers from the first 10, 2 labels numpy's IndexError."""
    r = _routing(np.full((10, 2, 2), 0.5))
    for labels in (pd.Categorical(["a", "b"] * 8), pd.Categorical(["a", "b"]), ["a"] * 11):
        for analysis in (r.label_load, r.label_divergence):
            with pytest.raises(ValueError, match=rf"^{len(labels)} labels for 10 tokens: give one label per token$"):
                analysis(labels)


def test_compare_takes_a_whole_number_of_entries():
    r = _routing(np.full((2, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"^top \(the entries that differ most\) must be at least 0, not -1$"):
        r.compare(r, top=-1)
    with pytest.raises(TypeError, match=r"^top must be a whole number, not 2.5$"):
        r.compare(r, top=2.5)


def test_truncate_refuses_a_negative_length():
    r = _routing(np.full((3, 1, 2), 0.5))
    with pytest.raises(ValueError, match=r"^truncate keeps the first n tokens: n must be at least 0, not -1$"):
        r.truncate(-1)
    r.truncate(5)
    assert len(r) == 3
    r.truncate(1)
    assert r.tokens.tolist() == [1]


def test_analyses_of_a_wide_top_k_stay_in_bounded_memory():
    """Under a top-32 intervention, agreement, coactivation and transitions of all pairs compared every pick
    with every pick for 65,536 tokens at a time: tens of megabytes per layer (gigabytes at gpt-oss-120b's 36
    layers). Their steps now shrink with k², as at top-4."""
    rng = np.random.default_rng(0)
    n, layers, k, experts = 20_000, 2, 32, 64
    chosen = np.argsort(rng.random((n, layers, experts)), axis=-1)[..., :k]
    r = Routing(rng.integers(0, 1000, n), chosen, np.full((n, layers, k), 1 / k), num_experts=experts)
    for analysis in (lambda: r.agreement(r), lambda: r.coactivation(), lambda: r.transitions(top1=False)):
        tracemalloc.start()
        try:
            analysis()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{peak >> 20} MB"
    assert r.agreement(r)["same_set"].tolist() == [1.0, 1.0]
    assert np.diag(r.coactivation()).sum() == n * layers * k


def test_labels_that_are_no_text_are_refused_and_leave_the_record_as_it_was(tmp_path):
    """A label None or 1 was kept, saved, then the record was refused on load ("label_names is not a list of at
    most 255 texts"); a refused relabel (a 256th label) left the record without label names (an IndexError)."""
    e, w = np.zeros((2, 1, 2), int), np.full((2, 1, 2), 0.5)
    for labels in ([None, "x"], [1, 2]):
        with pytest.raises(TypeError, match=rf"^labels are texts \(a Harmony channel, 'text' ...\), not {labels[0]}$"):
            Routing([1, 2], e, w, labels, num_experts=4)
    r = Routing([1, 2], e, w, ["user", "final"], num_experts=4)
    for labels in (["x", None], ["x", 2]):
        with pytest.raises(TypeError, match="^labels are texts"):
            r.relabel(labels)
    many = Routing(np.arange(300), np.zeros((300, 1, 2), int), np.full((300, 1, 2), 0.5), num_experts=4)
    with pytest.raises(ValueError, match="^a routing record holds at most 255 different labels$"):
        many.relabel([f"l{i}" for i in range(300)])
    assert r.labels == ["user", "final"] and many.labels == [""] * 300
    assert load(r.save(tmp_path / "r")).labels == ["user", "final"]


def test_a_record_written_before_with_uint8_ids_past_127_still_loads(tmp_path):
    """Records of 129 to 254 experts were written with uint8 ids (now uint16): their empty slots (255) still
    read as -1 and their ids past 127 as themselves."""
    experts = np.array([[[0, -1], [199, 128]]])
    r = Routing([5], experts, np.array([[[1.0, 0.0], [0.5, 0.5]]]), num_experts=200)
    path = r.save(tmp_path / "r")
    assert np.load(path / "experts.npy").dtype == np.uint16
    np.save(path / "experts.npy", experts.astype(np.uint8))  # as the writer did before: -1 as 255
    assert load(path).experts.tolist() == experts.tolist()


def test_compare_takes_two_records_of_one_model_whose_expert_counts_were_inferred():
    """Two hand-made records of one 4-expert model, one of which never chose expert 3, were refused ("cannot compare
    routings of 2×4 and 2×3"), which agreement accepts; records of other models are refused as agreement refuses."""
    mine = Routing([1, 2], np.array([[[0, 3], [1, 2]], [[0, 1], [2, 3]]]), np.full((2, 2, 2), 0.5))
    other = Routing([1, 2], np.array([[[0, 1], [1, 2]], [[0, 1], [2, 1]]]), np.full((2, 2, 2), 0.5))
    comparison = mine.compare(other, top=1)
    assert comparison.top == [(0, 1, 0.25, 0.5)] and len(comparison.jsd) == 2
    with pytest.raises(ValueError, match=r"^the records differ in experts \(4 and 3\): compare compares two routings "
                                         r"of the same model$"):
        mine.compare(Routing([1], np.zeros((1, 2, 2), int), np.full((1, 2, 2), 0.5), num_experts=3))


def test_a_records_summary_writes_a_labels_controls_out():
    """A record's summary (its text in a saved notebook, the still image's title) put a label in as it was: its ESC
    sequence reached the terminal it was shown in (IPython), its U+202E reversed the rest of the line."""
    from gptoss_lab.widgets.routing import static_bundle

    r = Routing([11, 12], np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), ["a\x1b[2J", "b\u202ec"], num_experts=1)
    for text in (repr(r), static_bundle(r)["text/plain"]):
        assert "\x1b" not in text and "\u202e" not in text and "a\\x1b[2J 1, b\\u202ec 1" in text, text


def test_a_foreign_records_intervention_is_shown_with_its_controls_written_out(tmp_path):
    """The intervention a record's meta.json says (a record from elsewhere) went as it was into its summary, its view's
    header and its Corpus's: its ESC sequence reached the terminal it was shown in, its U+202E reversed the line."""
    import json

    from gptoss_lab.widgets.routing import RoutingView

    folder = Routing([11, 12], np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), num_experts=1).save(tmp_path / "r")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "intervention": "none\x1b[2J \u202eevil"}))
    r = load(folder)
    view = RoutingView(r)
    try:
        for text in (repr(r), view.intervention, repr(Corpus.load(folder))):
            assert "\x1b" not in text and "\u202e" not in text and "none\\x1b[2J \\u202eevil" in text, text
    finally:
        view.close()


def test_a_long_intervention_is_cut_between_the_characters_it_writes_out(tmp_path):
    """A summary cut the intervention after writing it out, inside an escape (`\\u20 …`), and a Corpus's said all of
    a meta.json's megabytes: both say its first 300 characters, each written out whole."""
    import json

    folder = Routing([11], np.zeros((1, 1, 1), int), np.ones((1, 1, 1)), num_experts=1).save(tmp_path / "r")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "intervention": "x" * 298 + "\u202e" * 5000}))
    for text in (load(folder).intervention_shown, repr(Corpus.load(folder))):
        assert "x" * 298 + "\\u202e\\u202e …" in text and len(text) < 500, text[-40:]


def test_pieces_of_a_character_are_shown_as_their_bytes_everywhere():
    """Byte-level BPE pieces of one character ("🧠", " ⸺") all read "\ufffd" in the tables, the view and the cards,
    told apart by their ids alone: each is shown as its bytes, `<0xF0 0x9F>`, as byte fallback writes them."""
    from gptoss_lab.widgets.routing import RoutingView

    ids = harmony.encode_text("\U0001F9E0 \u2e3a\ufffd")
    r = Routing(ids, np.zeros((len(ids), 1, 1), int), np.ones((len(ids), 1, 1)), num_experts=1)
    view = RoutingView(r)
    try:
        for texts in (r.strings, view.strings, list(r.top_tokens()["text"]), list(r.to_frame()["text"])):
            assert {"<0xF0 0x9F>", "<0xA7>", "<0xA0>", " <0xE2>", "<0xB8>", "<0xBA>", "\ufffd"} == set(texts), texts
        assert "' <0xE2>'×1" in repr(r.expert_card(0, 0))
    finally:
        view.close()
