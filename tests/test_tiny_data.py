"""gpt-oss-tiny's training data: conversations run through a real Session, laid out exactly as the
model reads them, every skill and effort, real tool results, answers the evaluation scores right."""
from __future__ import annotations

import ast
import copy
import functools
import inspect
import json
import random
import re
from collections import Counter

import pytest
from openai_harmony import Role
from safetensors.torch import load_file

from gptoss_lab import harmony
from gptoss_lab.session import Session
from gptoss_lab.tiny import CHECKPOINT, data, evaluate, skills


@functools.cache
def _conversations() -> list[data.Conversation]:
    return [data.conversation(f"test-{i}", long=i == 0) for i in range(90)]


def _kept(c: data.Conversation) -> list:
    """The messages the model reads for the last turn: earlier turns' analysis is dropped."""
    session = _replay(c)
    start = max(i for i, m in enumerate(session.history) if m.author.role == Role.USER)
    return [m for i, m in enumerate(session.history)
            if not (i < start and m.author.role == Role.ASSISTANT and m.channel == "analysis" and not m.recipient)]


_REPLAYS: dict[int, tuple[data.Conversation, Session]] = {}


def _replay(c: data.Conversation) -> Session:
    """The conversation asked again in a fresh session, the teacher (`session.engine`) answering. Tests only read
    it, so each conversation is replayed once per run (a replay runs every turn through a real Session)."""
    if id(c) not in _REPLAYS:
        teacher, user = data.Teacher(), data.ScriptedUser()
        session = Session(teacher, namespace=copy.deepcopy(c.namespace), view=user, tools=c.tools(), date=c.date,
                          browser=c.library.browser() if c.library else None)
        teacher.session = session
        for turn in c.turns:
            data.ask(session, user, turn, teacher)
        _REPLAYS[id(c)] = c, session   # c is kept alive, so its id is not reused
    return _REPLAYS[id(c)][1]


@functools.cache
def _held_out(seed: int = evaluate.HELD_OUT_SEED, fresh: bool = False) -> list[data.Conversation]:
    """The first 60 held-out conversations of `seed`, made once per run: `evaluate.conversations(n, ...)` with no long
    ones is the first n of them whatever n is, so tests take the first n of these."""
    return evaluate.conversations(60, seed, long_share=0.0, fresh=fresh)


def _shape(m) -> tuple:
    text = harmony.text_of(m) if m.author.role not in (Role.SYSTEM, Role.DEVELOPER) else ""
    return m.author.role, m.author.name, m.channel, m.recipient, m.content_type, text


def test_sequence_is_exactly_what_the_session_rendered_and_parses_back():
    for c in _conversations()[:30]:
        assert c.ids == _replay(c).engine.last  # the session's own last prompt, then the teacher's last reply
        parsed = harmony.encoding().parse_messages_from_completion_tokens(c.ids, None)
        kept = [m for m in _kept(c)]
        assert [_shape(m) for m in parsed[-len(kept):]] == [_shape(m) for m in kept]
        assert c.ids[-1] == harmony.RETURN and c.covered[-1]


def test_loss_covers_the_last_turn_as_generated_and_earlier_calls_and_answers_as_kept():
    for c in _conversations()[:40]:
        ids, covered = c.ids, c.covered
        last_user = max(p for p in range(len(ids) - 1) if ids[p] == harmony.START and harmony.decode([ids[p + 1]]) == "user")
        role = None
        for p, (t, cov) in enumerate(zip(ids, covered)):
            if p and ids[p - 1] == harmony.START:
                role = harmony.decode([t]).strip()
            if cov:
                assert role == "assistant", harmony.decode(ids[max(0, p - 5):p + 3])
                if p < last_user:   # earlier turns: message contents and <|call|> only, never a header or <|end|>
                    assert t != harmony.END and t != harmony.START
        # the last turn's first message starts right after the prompt's <|start|>assistant
        first = next(p for p in range(last_user, len(ids)) if ids[p] == harmony.START and harmony.decode([ids[p + 1]]) == "assistant")
        assert not covered[first] and not covered[first + 1] and covered[first + 2]


def test_some_conversations_offer_only_the_browser_or_functions_and_never_call_python():
    """`%%gptoss --tools browser` is how the README asks about documents: the model must have seen a
    system message without python, and turns that answer with the tools it has."""
    without = [c for c in _conversations() if not c.python]
    assert 5 <= len(without) <= 30, len(without)
    for c in without:
        assert c.library is not None or c.functions, c.turns[0].prompt
        prompt = harmony.encoding().decode(c.ids)
        assert "## python" not in prompt and ("## browser" in prompt or "namespace functions" in prompt)
        assert not [t for t in c.turns if t.call == "python"], [t.prompt for t in c.turns]
    assert any(c.library is not None and not c.functions for c in without)   # the kernel test's `--tools browser`


def test_conversations_mix_skills_turns_efforts_and_follow_ups():
    conversations = _conversations()
    skills = Counter(t.skill for c in conversations for t in c.turns)
    assert set(skills) >= {"arithmetic", "kernel", "dataframe", "function", "browse", "structured", "error", "skip",
                           "direct", "define", "followup", "long"}, skills
    assert {len(c.turns) for c in conversations} >= set(range(1, 9))
    assert {c.effort for c in conversations} == set(harmony.EFFORTS)
    code = " ".join(c.ids and harmony.decode(c.ids) for c in conversations)
    for op in (" + ", " - ", " * ", " / ", " // ", " % ", " ** "):
        assert f"print({op.strip()}" in code or op in code, op
    assert re.search(r"\['\w+'\]\.mean\(\)", code)  # pandas questions
    assert max(len(c.ids) for c in conversations) >= 8192  # long conversations reach past 8k tokens


def test_reasoning_effort_sets_the_analysis_length():
    words = {e: [] for e in harmony.EFFORTS}
    for c in _conversations():
        last = max(i for i, m in enumerate(_kept(c)) if m.author.role == Role.USER)
        analysis = [harmony.text_of(m) for m in _kept(c)[last:] if m.channel == "analysis" and not m.recipient]
        words[c.effort].append(sum(len(a.split()) for a in analysis))
    mean = {e: sum(w) / len(w) for e, w in words.items()}
    assert mean["low"] * 2 < mean["medium"] < mean["high"] / 1.5, mean


def test_the_evaluation_gives_the_teacher_full_marks():
    """The scorer and the teacher agree: every turn the teacher answers is scored right (its deliberate
    wrong first calls in error turns aside), citations resolve to the fact's line, no loop after a skip."""
    for c in _held_out()[:25]:
        session = _replay(c)
        for turn, reply in zip(c.turns, session.replies):
            result = evaluate.score(turn, reply)
            assert result["valid"] and result["final"] and not result.get("loops"), (turn.prompt, reply.final, result)
            assert result["tool"] or turn.skill == "error", (turn.prompt, reply.tool_calls)
            if "cited" in result:
                assert result["cited"], (turn.prompt, reply.final, reply.citations)


def test_skipped_calls_are_answered_honestly_without_a_second_call():
    seen = Counter()
    for c in _conversations():
        session = _replay(c)
        replies = session.replies
        for turn, reply in zip(c.turns, replies):
            if turn.skipped:
                seen[reply.tool_calls[0].output.split(":", 1)[1].split("(")[0].strip()[:30]] += 1
                assert len(reply.tool_calls) == 1 and reply.tool_calls[0].status == "skipped"
                assert "could not" in reply.final
    assert len(seen) == 3, seen  # the user skipped, nobody could approve, approval: never


def test_function_calls_are_json_to_a_listed_function_on_commentary():
    calls = 0
    for c in _conversations():
        session = _replay(c)
        for i, m in enumerate(session.history):
            if (m.recipient or "").startswith("functions."):
                calls += 1
                assert m.channel == "commentary" and m.content_type == "<|constrain|>json"
                assert m.recipient.removeprefix("functions.") in c.functions.names
                json.loads(harmony.text_of(m))
                assert session.history[i + 1].author.name == m.recipient
    assert calls > 5


def test_every_word_of_a_held_out_question_is_one_the_model_can_read():
    """Held-out questions are new sentences made of words training has. A token the data never has keeps
    a zero embedding row in the shipped weights, so a question holding one ('multiplied', 'dimensions')
    asks the model to read a blank: every token of every held-out prompt must have a trained row, and
    most prompts must still be sentences training never asks."""
    weights = load_file(str(CHECKPOINT / "model.safetensors"))
    trained = set(weights["model.embed_tokens.weight"].float().abs().sum(1).nonzero().flatten().tolist())
    prompts = {t.prompt for seed in (evaluate.HELD_OUT_SEED, evaluate.HELD_OUT_SEED + 1) for fresh in (False, True)
               for c in _held_out(seed, fresh) for t in c.turns}
    unreadable = {p: [harmony.decode([i]) for i in harmony.encode_text(p) if i not in trained] for p in prompts}
    assert not {p: words for p, words in unreadable.items() if words}
    training_prompts = {t.prompt for c in _conversations() for t in c.turns}
    assert len(prompts - training_prompts) > 0.5 * len(prompts)


def test_training_names_vary_and_never_make_a_held_out_name():
    """Training draws new variable names (a base and a suffix, `temps3`), so the model must copy the name
    the user wrote rather than recall a few; the evaluation's held-out names are never made."""
    pools = (skills.LIST_NAMES, skills.DICT_NAMES, skills.STRING_NAMES, skills.FRAME_NAMES)
    held = {name for pool in pools for name in pool.held}
    bases = {name for pool in pools for name in pool.train}
    g = skills.Gen(random.Random(3))
    names = [name for _ in range(300) for name in skills.make_namespace(g)]
    made = [name for name in names if name not in bases]
    assert not held & set(names)
    assert 0.25 < len(made) / len(names) < 0.6 and len(set(made)) > 150, (len(made), len(names), len(set(made)))
    assert all(name.isidentifier() for name in names)


def test_a_training_phase_can_weight_topics_and_the_default_draws_stay_the_same():
    """`--topics browse=0.3` gives a phase more browsing lessons (and more document folders); without it
    a seed draws exactly the conversations it always drew, so evaluations stay comparable."""
    plain = _conversations()[1:61]   # conversation i is data.conversation(f"test-{i}"), not long
    assert [c.ids for c in plain] == [data.conversation(f"test-{i}", topics={}).ids for i in range(1, 61)]
    boosted = [data.conversation(f"test-{i}", topics={"browse": 0.3}) for i in range(1, 61)]

    def browsing(conversations: list[data.Conversation]) -> int:
        return sum(t.skill == "browse" for c in conversations for t in c.turns)
    assert browsing(boosted) > 2 * browsing(plain) > 0, (browsing(boosted), browsing(plain))


def _pools() -> list[skills.Pool]:
    """Every pool of the skills module, however deep in its tables."""
    found: dict[int, skills.Pool] = {}

    def walk(item: object) -> None:
        if isinstance(item, skills.Pool):
            found[id(item)] = item
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                walk(value)
    for value in vars(skills).values():
        walk(value)
    return list(found.values())


def _made_pools() -> list[skills.Pool]:
    """The pools the skills module's functions make as they run (a function's questions, 'OK, run it.')."""
    tree = ast.parse(inspect.getsource(skills))
    calls = [node for function in tree.body if isinstance(function, ast.FunctionDef) for node in ast.walk(function)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Pool", "Names")]
    kinds = {"Pool": skills.Pool, "Names": skills.Names}
    return [kinds[call.func.id](*map(ast.literal_eval, call.args), **{k.arg: ast.literal_eval(k.value) for k in call.keywords})
            for call in calls]


@functools.cache
def _training_prompts() -> set[str]:
    """The prompts of 150 training conversations drawn without further phrasings (the seeds `_check_further` draws
    with them), made once for both options."""
    return {t.prompt for i in range(150) for t in data.conversation(f"further-{i}").turns}


def _check_further(option: str, pools: list[skills.Pool], held: list[str], least: int) -> list[str]:
    """The further training sentences of `pools` that `option` ("more", "wide") draws: each keeps its pool's fields and
    is within a word-set Jaccard similarity of 0.6 of none of `held`; the held-out conversations stay the same with the
    option, and training asks them only with it (`least` distinct prompts in 150 conversations)."""
    further = [(sentence, pool) for pool in pools for sentence in getattr(pool, option)]
    for sentence, pool in further:
        assert sentence not in pool.train + pool.held and sentence not in held, sentence
        assert set(re.findall(r"\{(\w+)\}", sentence)) == set(re.findall(r"\{(\w+)\}", pool.train[0])), sentence
        near = max(held, key=lambda h: _jaccard(h, sentence))
        assert _jaccard(near, sentence) < 0.6, (sentence, near)
    assert [data.conversation(f"eval-{evaluate.HELD_OUT_SEED}-{i}", "eval", **{option: True}).ids for i in range(20)] == \
        [c.ids for c in _held_out()[:20]]
    patterns = [re.compile(_pattern(sentence) + "$") for sentence, _ in further]

    def asked(prompts: set[str]) -> list[str]:
        return [p for p in prompts if any(pattern.match(p) for pattern in patterns)]
    assert not asked(_training_prompts())
    drawn = asked({t.prompt for i in range(150) for t in data.conversation(f"further-{i}", **{option: True}).turns})
    assert len(drawn) >= least, drawn
    return [sentence for sentence, _ in further]


def test_more_phrasings_are_further_training_sentences_far_from_every_held_out_one():
    """`tiny.train --more-phrasings` asks some question types in further sentences ('How big is d in number of
    keys?'); each keeps its pool's fields, none is within a word-set Jaccard similarity of 0.6 of any held-out
    sentence, the held-out conversations stay the same with the option, and training draws them only with it."""
    pools = _pools()
    more = _check_further("more", pools, [h for pool in pools for h in pool.held if isinstance(h, str)], 5)
    assert len(more) >= 60, len(more)


def test_wide_phrasings_are_training_sentences_far_from_every_held_out_one():
    """`tiny.train --wide-phrasings` trains every kind of user prompt in more of the ways users word it."""
    pools = _pools() + _made_pools()
    assert not [pool.train[0] for pool in pools if pool.more and pool.wide]   # so none is one of its pool's `more`
    held = [h for pool in pools for h in pool.held + pool.fresh if isinstance(h, str)]
    wide = _check_further("wide", pools, held, 20)
    widened = [pool for pool in pools if pool.wide]
    assert len(wide) >= 200 and len(widened) >= 40, (len(wide), len(widened))


def test_fresh_held_out_sentences_replace_the_held_out_ones_of_the_types_that_got_more():
    """The pools with `more` sentences (written after reading which held-out sentences the model missed) have
    fresh held-out sentences, as far from their training sentences as the first ones, that `evaluate --fresh`
    asks instead: the same conversations, with only those prompts changed (long ones aside: their padding follows
    the length of the text before it)."""
    pools = [pool for pool in _pools() if pool.more]
    assert pools and all(len(pool.fresh) == len(pool.held) for pool in pools)
    for pool in pools:
        for sentence in pool.fresh:
            assert sentence not in pool.held and sentence not in pool.train + pool.more, sentence
            assert set(re.findall(r"\{(\w+)\}", sentence)) == set(re.findall(r"\{(\w+)\}", pool.held[0])), sentence
            assert all(_jaccard(sentence, t) < 0.6 for t in pool.train + pool.more), sentence
    with pytest.raises(ValueError, match="one for one"):
        skills.Pool(("a",), ("b",), ("c",), ("d", "e"))
    swap = {h: f for pool in pools for h, f in zip(pool.held, pool.fresh)}
    changed = 0
    both = zip(_held_out()[:40], _held_out(fresh=True)[:40])
    for plain, fresh in both:
        assert len(plain.turns) == len(fresh.turns)
        for a, b in zip(plain.turns, fresh.turns):
            if a.prompt != b.prompt:
                template = next(h for h in swap if re.fullmatch(_pattern(h), a.prompt))
                assert re.fullmatch(_pattern(swap[template]), b.prompt), (a.prompt, b.prompt)
                changed += 1
            assert (a.skill, a.expected) == (b.skill, b.expected), (a.prompt, b.prompt)
    assert changed >= 5, changed


def _jaccard(a: str, b: str) -> float:
    """Word-set Jaccard similarity of two sentences (how near a training sentence is to a held-out one)."""
    words_a, words_b = (set(re.findall(r"\w+", text.lower())) for text in (a, b))
    return len(words_a & words_b) / len(words_a | words_b)


def _pattern(template: str) -> str:
    """A regular expression for the sentences a template makes ('{v}' matches any text)."""
    parts = re.split(r"(\{\w+\})", template)
    return "".join(".+" if re.fullmatch(r"\{\w+\}", part) else re.escape(part) for part in parts)


def test_final_answers_state_only_values_the_conversation_has_shown():
    """Every number in a final answer, and every key a missing-key answer lists, was in the conversation
    before it (asked, or printed by a call of that turn): the model learns to copy values, not to make them up."""
    for c in _conversations():
        text = harmony.encoding().decode(c.ids)
        k = text.rfind("<|channel|>final<|message|>")
        answer = text[k:].split("<|message|>", 1)[1].split("<|")[0]
        assert all(evaluate.states(text[:k], n) for n in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?!\w)", answer)), answer
    listed = 0
    for i in range(60):
        c = data.conversation(f"keys-{i}", turns=1, topics={"error": 50.0})
        text = harmony.encoding().decode(c.ids)
        if keys := re.search(r"Its keys are: ([^.]*)\.", text):
            printed = text[text.rfind("<|start|>user"):text.rfind("<|channel|>final")]
            outputs = "".join(re.findall(r"<\|start\|>python to=assistant<\|channel\|>analysis<\|message\|>(.*?)<\|end\|>",
                                         printed, re.S))
            assert all(f"'{key}'" in outputs for key in keys.group(1).split(", ")), printed
            listed += 1
    assert listed >= 3, listed


def test_training_asks_about_long_numbers_and_the_evaluation_keeps_the_users_sizes():
    """000-099 are tokens only inside numbers of six digits or more (590062 is 590|062): training
    practises such numbers, the held-out questions keep the sizes users ask about (up to four digits)."""
    def long_share(split: str) -> float:
        exprs = [skills.expression(skills.Gen(random.Random(i), split))[1] for i in range(400)]
        return sum(any(len(n) >= 6 for n in re.findall(r"\d+", e)) for e in exprs) / len(exprs)

    assert long_share("train") > 0.2
    assert long_share("eval") == 0.0


def test_ctrl_c_while_a_conversation_is_made_stops_making_it(monkeypatch):
    """A Session turns Ctrl-C into an interrupted Reply and goes on; making data (and evaluating) must stop
    instead: it went on and failed with a mismatched training sequence, or ignored the Ctrl-C."""
    stream, calls = data.Teacher.stream, []

    def interrupted_on_the_third_message(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return stream(self, *args, **kwargs)

    monkeypatch.setattr(data.Teacher, "stream", interrupted_on_the_third_message)
    with pytest.raises(KeyboardInterrupt):
        data.conversation("test-interrupt", turns=4)
    assert len(calls) == 3   # nothing was written after the interrupt
