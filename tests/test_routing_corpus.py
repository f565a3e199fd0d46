"""route(): prefill-only routing over many texts equals what a turn records, in order, batched or
not, in memory or streamed to a record folder, and a failed run keeps what it had done."""
from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pytest

from gptoss_lab import harmony
from gptoss_lab.routing import Corpus, route


@pytest.fixture(scope="module")
def session():
    from gptoss_lab import Session

    return Session.load("tiny", progress=False, dtype="float32", session_options={"approval": "auto"})


@pytest.fixture(scope="module")
def turn(session):
    """A real turn on gpt-oss-tiny (with a python call), recorded token by token as it ran."""
    session.reset()
    reply = session.ask("What is 37 * 12?", routing=True, temperature=0, max_new_tokens=120)
    session.reset()
    assert reply.routing is not None and len(reply.routing) > 200
    return reply.routing


def test_route_equals_the_per_turn_capture(session, turn):
    ids = turn.tokens.tolist()
    corpus = route([ids[:40], ids, "plain text, routed as text", ids[:150]], session, batch_size=3, progress=False)
    assert len(corpus) == 4 and corpus.lengths.tolist()[:2] == [40, len(ids)]
    whole = corpus[1]
    np.testing.assert_array_equal(whole.experts, turn.experts)        # batched with shorter texts, padded
    np.testing.assert_allclose(whole.weights, turn.weights, atol=1e-5)  # float32, batched vs one by one
    assert whole.labels == turn.labels and whole.strings == turn.strings
    np.testing.assert_array_equal(corpus[3].experts, turn.experts[:150])
    assert set(corpus[2].labels) == {"text"} and corpus[2].tokens.tolist() == harmony.encode_text("plain text, routed as text")
    assert len(corpus.combined) == sum(corpus.lengths) and corpus.combined.num_experts == 8
    with pytest.raises(TypeError, match=r"^a text's index must be a whole number, not 1\.5$"):
        corpus[1.5]  # was numpy's "only integers, slices ... are valid indices"
    assert corpus[np.int64(-1)].tokens.tolist() == corpus[3].tokens.tolist()


def test_long_texts_are_routed_in_chunks_over_a_cache(session, turn):
    """Past the engine's prefill chunk a text runs chunk by chunk (sliding-window layers included)."""
    chunk = session.engine.prefill_chunk
    session.engine.prefill_chunk = 64  # tiny's sliding window is 128: chunks cross it
    try:
        corpus = route([turn.tokens.tolist()], session, progress=False)
    finally:
        session.engine.prefill_chunk = chunk
    np.testing.assert_array_equal(corpus[0].experts, turn.experts)


def _conversation(question: str, answer: str) -> list:
    return [harmony.system_message("low", date="2025-01-01"), harmony.user_message(question),
            harmony.assistant_message("Use python.", "analysis"),
            harmony.assistant_message(f"print({question})", "analysis", "python"),
            harmony.tool_message("python", answer, "analysis"),
            harmony.assistant_message(f"{question} = {answer}.", "final")]


def test_conversations_are_rendered_as_they_happened(session):
    conversations = [_conversation("2 + 3", "5"), _conversation("7 * 6", "42")]
    corpus = route(conversations, session, labels=["sum", "product"], progress=False)
    for messages, routing in zip(conversations, corpus):
        ids = harmony.render(messages, keep_analysis_from=0)[:-2]
        assert ids[-1] == harmony.END
        ids[-1] = harmony.RETURN  # a finished turn ends as the model ended it
        assert routing.tokens.tolist() == ids
        assert routing.labels == harmony.label_tokens(ids)
        assert {"system", "user", "analysis", "tool", "final"} <= set(routing.labels)
    assert corpus.doc_labels == ["sum", "product"]
    assert corpus.label_load().attrs["tokens"] == {"product": len(corpus[1]), "sum": len(corpus[0])}


def test_streams_to_disk_past_the_memory_limit(session, turn, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the spill folder is the test's, not left in /tmp
    ids = turn.tokens.tolist()
    texts = [ids[:n] for n in (30, 90, 60, 120)]
    in_memory = route(texts, session, progress=False)
    with pytest.warns(UserWarning, match="streaming it to") as warned:
        streamed = route(texts, session, memory_limit=10_000, progress=False)
    assert warned[0].filename == __file__   # the line that called route, not one inside it
    assert streamed.meta["path"].startswith(str(tmp_path / "gptoss_lab-routing-"))
    assert isinstance(streamed.combined.experts, np.memmap)
    np.testing.assert_array_equal(streamed.combined.experts, in_memory.combined.experts)
    assert streamed.lengths.tolist() == [30, 90, 60, 120]
    chosen = route(texts, session, path=tmp_path / "run", labels=["a", "b", "a", "b"], progress=False)
    again = Corpus.load(tmp_path / "run")
    assert chosen.meta["path"] == str(tmp_path / "run") and again.doc_labels == ["a", "b", "a", "b"]
    np.testing.assert_array_equal(again[2].experts, in_memory[2].experts)


def test_a_failed_run_keeps_the_texts_it_finished(session, turn, tmp_path):
    items = [turn.tokens[:20].tolist()] * 8 + [object()]  # the 9th item is in the second window
    with pytest.raises(TypeError, match="texts, conversations"):
        route(items, session, batch_size=1, path=tmp_path / "partial", progress=False)
    kept = Corpus.load(tmp_path / "partial")
    assert len(kept) == 8 and kept.lengths.tolist() == [20] * 8


def test_ctrl_c_is_one_line_saying_how_far_it_got_and_where_the_finished_texts_are(session, turn, tmp_path,
                                                                                    ctrl_c_raises, monkeypatch):
    """Ctrl-C (a kernel interrupt) mid-corpus: a traceback through torch said neither what stopped nor what was kept;
    now one line does (IPython shows `_render_traceback_`), the finished texts come with it, and the model routes as
    before. A second Ctrl-C while the routed texts were being kept lost them, and the line said none was routed."""
    import signal

    from gptoss_lab.engines.hooks import model_of
    from gptoss_lab.routing import corpus as corpus_module

    ids = turn.tokens[:20].tolist()
    passes = [0, 5]   # forward passes so far, and the one Ctrl-C is pressed in (batch_size=1: one per text); texts
                      # are routed in windows of 8, sorted by length: the 4 done of a window are kept as well

    def press(module, args, output):
        passes[0] += 1
        if passes[0] == passes[1]:
            signal.raise_signal(signal.SIGINT)

    finish = corpus_module._Store.finish

    def pressed_again(*args, **kw):   # the impatient second Ctrl-C, as the texts routed are kept
        signal.raise_signal(signal.SIGINT)
        return finish(*args, **kw)

    handle = model_of(session)[1].register_forward_hook(press)
    try:
        with pytest.raises(KeyboardInterrupt) as memory:
            route([ids] * 10, session, batch_size=1, progress=False)
        passes[:] = [0, 9]
        with pytest.raises(KeyboardInterrupt) as folder:
            route([ids] * 10, session, batch_size=1, progress=False, path=tmp_path / "part")
        passes[:] = [0, 1]
        with pytest.raises(KeyboardInterrupt) as first:
            route([ids] * 10, session, batch_size=1, progress=False)
        monkeypatch.setattr(corpus_module._Store, "finish", pressed_again)
        passes[:] = [0, 5]
        with pytest.raises(KeyboardInterrupt) as twice:
            route([ids] * 10, session, batch_size=1, progress=False)
    finally:
        handle.remove()
        monkeypatch.setattr(corpus_module._Store, "finish", finish)
    assert twice.value._render_traceback_() == memory.value._render_traceback_()
    assert len(twice.value.kept) == 4
    assert memory.value._render_traceback_() == [
        "Interrupted: route stopped (Ctrl-C) after 4 of 10 texts: the 4 routed are kept in this error's .kept (in a "
        "notebook: sys.last_value.kept)"]
    assert folder.value._render_traceback_() == [
        f"Interrupted: route stopped (Ctrl-C) after 8 of 10 texts: the 8 routed are kept in {str(tmp_path / 'part')!r}: "
        "Corpus.load(that folder)"]
    assert first.value._render_traceback_() == [
        "Interrupted: route stopped (Ctrl-C) before the first of 10 texts was routed: nothing was kept"]
    assert first.value.kept is None
    again = route([ids] * 8, session, batch_size=1, progress=False)
    for kept, count in ((memory.value.kept, 4), (Corpus.load(tmp_path / "part"), 8)):
        assert kept.lengths.tolist() == [20] * count
        np.testing.assert_array_equal(kept.combined.experts, again.combined.experts[:20 * count])


def test_one_line_errors(session):
    from gptoss_lab import ReplayEngine

    with pytest.raises(ValueError, match="has none: load one"):
        route(["x"], ReplayEngine("<|channel|>final<|message|>hi<|return|>"), progress=False)
    with pytest.raises(ValueError, match="^batch_size must be a whole number of texts ≥ 1, not 0$"):
        route(["x"], session, batch_size=0)
    with pytest.raises(ValueError, match="one label per text"):
        route(["x", "y"], session, labels=["a"])
    with pytest.raises(ValueError, match="^2 labels for 1 text: give one label per text$"):   # "1 texts"
        route(["x"], session, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"^a label is a name of at most 100 characters \(a channel, a category\), "
                                         r"not one of 1,000,000$"):  # was taken, as a record's labels are not
        route(["x"], session, labels=["L" * 10**6])
    with pytest.raises(TypeError, match="^token ids are whole numbers, not True$"):   # routed as tokens 1 and 0
        route([[True, False]], session, progress=False)
    with pytest.raises(TypeError, match="^token ids are whole numbers, not 1.5$"):
        route([[200006, 1.5]], session, progress=False)
    labelled = route(["x", "y"], session, labels=(f"L{i}" for i in range(2)), progress=False)   # "has no len()"
    assert labelled.doc_labels == ["L0", "L1"]
    with pytest.raises(TypeError, match=r"route takes a list of texts, not one text: route\(\[text\], model\)"):
        route("hello", session)  # was routed as five one-letter texts
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about in a small run
        assert len(route([], session, progress=False)) == 0


@pytest.mark.parametrize("argument,bad,said", [
    ("batch_size", 2.5, "batch_size must be a whole number, not 2.5"),  # 2.5 was a TypeError from range()
    ("batch_size", True, "batch_size must be a whole number, not True"),  # True was taken as 1
    ("batch_size", "8", "batch_size must be a whole number, not '8'"),
    ("memory_limit", "1GB", "memory_limit must be a number of bytes, not '1GB'"),
    ("path", 8, "path must be a folder's path (a str or Path), not int"),  # was pathlib's error, deep inside
], ids=["float-batch", "bool-batch", "text-batch", "text-limit", "int-path"])
def test_an_argument_of_the_wrong_type_is_a_type_error_naming_it(session, argument, bad, said):
    with pytest.raises(TypeError) as caught:
        route(["x"], session, progress=False, **{argument: bad})
    assert str(caught.value) == said


def test_numpy_whole_numbers_are_whole_numbers(session):
    """batch_size=np.int64(8) (a length from numpy, a value from a config array) was refused."""
    corpus = route(["hello world", "a b c"], session, batch_size=np.int64(8), memory_limit=np.int64(1 << 30),
                   progress=False)
    assert len(corpus) == 2


def test_a_top_k_intervention_streams_to_a_folder_too(session, tmp_path, monkeypatch):
    """Routed under `top_k(3)`, a corpus has 3 picks per layer in memory, in a folder given with `path=` and
    past `memory_limit` alike: the folder's columns were made for the model's top-2 ("routing of
    [layers, k] = [4, 3] does not fit this record's [4, 2]")."""
    from gptoss_lab.routing import top_k

    texts = ["hello world", "a b c"]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the spill folder is the test's
    with top_k(3).apply(session):
        kept = route(texts, session, progress=False)
        stored = route(texts, session, progress=False, path=tmp_path / "c")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "streaming it to ..."
            spilled = route(texts, session, progress=False, memory_limit=10)
    for corpus in (kept, stored, spilled):
        assert corpus.combined.top_k == 3 and len(corpus.combined) == 5
        np.testing.assert_array_equal(corpus.combined.experts, kept.combined.experts)
    assert Corpus.load(tmp_path / "c").combined.top_k == 3


def test_a_corpus_routed_under_an_intervention_says_so_also_once_saved(session, tmp_path):
    """Routed under an ablation, a corpus (and its folder) read as the model's own routing: the baseline and the
    ablated run of a comparison could not be told apart."""
    from gptoss_lab.routing import disable

    with disable({0: [1, 2]}).apply(session):
        ablated = route(["hello world"], session, progress=False)
        stored = route(["hello world"], session, progress=False, path=tmp_path / "stored")
    said = "; routed under an intervention: disable experts 1, 2 in layer 0)"
    ablated.save(tmp_path / "saved")
    for corpus in (ablated, stored, Corpus.load(tmp_path / "saved"), Corpus.load(tmp_path / "stored")):
        assert repr(corpus).endswith(said) and corpus.meta["intervention"] == "disable experts 1, 2 in layer 0"
    plain = route(["hello world"], session, progress=False)
    assert "intervention" not in repr(plain) and "intervention" not in plain.meta


def test_a_corpus_of_empty_texts_keeps_the_model_shape(session, tmp_path):
    """Empty texts have no tokens, yet the corpus is still one of the model's 4 layers × top-2 (it said
    "0 tokens × 0 layers × top-0", and its expert cards "this record has layers 0..-1")."""
    corpus = route(["", ""], session, progress=False)
    assert repr(corpus).startswith("Corpus(2 texts (2 of them empty), 0 tokens × 4 layers × top-2 of 8 experts")
    assert corpus.combined.expert_card(3, 7).picks == 0
    assert repr(Corpus.load(corpus.save(tmp_path / "c"))).startswith("Corpus(2 texts (2 of them empty), 0 tokens × 4 "
                                                                    "layers × top-2")
    one = route(["", "hi"], session, progress=False)     # it said "2 texts, 1 tokens": the empty one unnamed
    assert repr(one).startswith("Corpus(2 texts (1 of them empty), 1 token × 4 layers × top-2 of 8 experts")


def test_records_go_to_the_home_folder_for_a_path_with_a_tilde(session, tmp_path, monkeypatch):
    """`save("~/runs/a")` writes under the home folder (it made a folder named "~" in the working folder)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    corpus = route(["hello world"], session, progress=False)
    assert corpus.save("~/runs/a") == tmp_path / "home" / "runs" / "a"
    assert Corpus.load("~/runs/a").combined.tokens.tolist() == corpus.combined.tokens.tolist()
    assert corpus.combined.save("~/runs/b") == tmp_path / "home" / "runs" / "b"
    stored = route(["hello world"], session, progress=False, path="~/runs/c")
    assert stored.meta["path"] == str(tmp_path / "home" / "runs" / "c")
    assert not (tmp_path / "~").exists()


def test_a_router_that_produces_nan_is_refused_naming_text_token_and_layer(session, tmp_path):
    """A router whose weights went NaN gives NaN gate weights: they were stored as 0 in the record folder, plausible
    data. `route` stops at the first such text in one line, and the folder keeps the texts done before it."""
    import torch

    router = session.engine.model.model.layers[1].mlp.router
    kept = router.weight.detach().clone()
    try:
        with torch.no_grad():
            router.weight[0] = float("nan")  # expert 0's logit is NaN for every token
        with pytest.raises(ValueError, match=r"^token 0 of text 0 has gate weight nan in layer 1, not a share in "
                                             r"0\.\.1 \(did the router produce NaN\?\): a routing record cannot hold it$"):
            route(["hello world", "a b c"], session, progress=False, path=tmp_path / "c")
    finally:
        with torch.no_grad():
            router.weight.copy_(kept)
    assert len(Corpus.load(tmp_path / "c")) == 0


def test_numeric_text_labels_are_kept_as_text(session, tmp_path):
    """Labels from a numpy array (np.int64) were kept until meta.json was written at the end of the run, which
    failed ("Object of type int64 is not JSON serializable"): the whole run's folder was no record."""
    stored = route(["hello world", "a b c"], session, labels=np.array([1, 2]), path=tmp_path / "c", progress=False)
    kept = route(["hello world", "a b c"], session, labels=np.array([1, 2]), progress=False)
    assert stored.doc_labels == kept.doc_labels == Corpus.load(tmp_path / "c").doc_labels == ["1", "2"]


def test_the_progress_bar_stays_as_a_record_of_what_ran(session, capsys):
    """The bar was cleared at the end, which in a notebook left a line of spaces, a blank gap above the result."""
    route(["one text", "another"], session)
    shown = capsys.readouterr().out.split("\r")[-1].strip()
    assert shown.startswith("routing: 100%") and "2/2" in shown, shown


def test_a_saved_or_moved_copy_names_its_own_folder(session, tmp_path):
    """`Corpus.load(copy)` said "stored in" the folder the corpus was first written to: the copy's meta.json kept
    that path, and a moved folder read the same (a researcher's review)."""
    import shutil

    route(["What is 2 + 2?", "Name a colour."], session, path=tmp_path / "first", progress=False)
    copy = Corpus.load(tmp_path / "first").save(tmp_path / "copy")
    shutil.move(tmp_path / "first", tmp_path / "moved")
    assert repr(Corpus.load(copy)).endswith(f", stored in {tmp_path / 'copy'})")
    assert repr(Corpus.load(tmp_path / "moved")).endswith(f", stored in {tmp_path / 'moved'})")
