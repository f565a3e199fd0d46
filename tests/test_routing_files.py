"""Routing records from elsewhere, and odd ones: a record folder holding a pipe is refused at once (reading it waited
forever), saving over a record never writes through a link it holds, labels and layers are bounded and any text
displays, pictures stay of bounded size and draw without warnings, and `route` and `token_effect` refuse token ids
past the model's vocabulary (and `route` arguments it cannot use) in one line."""
from __future__ import annotations

import json
import os
import shutil
import threading
import warnings

import numpy as np
import pytest

from gptoss_lab.routing import Corpus, Routing, load
from gptoss_lab.widgets.routing import static_bundle


def _small() -> Routing:
    return Routing([1, 2, 3], np.array([[[0, 1]], [[1, 2]], [[0, 2]]]), np.full((3, 1, 2), 0.5), ["user"] * 3,
                   num_experts=4)


def _within(seconds: float, call, *args):
    """`call(*args)`'s result or exception, or AssertionError if it has not returned within `seconds`."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call(*args)
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome, thread.is_alive()


def _unblock(fifo) -> None:
    """Let a reader waiting on `fifo` go (a writer that opens and closes: the reader sees its end)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting
        pass


@pytest.mark.parametrize("name", ["meta.json", "tokens.npy", "weights.npy"])
def test_a_record_folder_holding_a_pipe_is_refused_at_once(tmp_path, name):
    """A record unpacked from a tar archive may hold a named pipe: load() waited on it forever, the kernel busy."""
    folder = _small().save(tmp_path / "record")
    (folder / name).unlink()
    os.mkfifo(folder / name)
    outcome, waiting = _within(10, load, folder)
    _unblock(folder / name)
    assert not waiting, f"load() still waits on the pipe {name}"
    error = outcome.get("error")
    assert isinstance(error, ValueError) and str(error) == (
        f"{folder} is not a valid routing record: {name}: not a regular file (a pipe or a device is never read)")


def test_saving_over_a_record_holding_a_pipe_is_refused_at_once(tmp_path):
    folder = _small().save(tmp_path / "record")
    (folder / "meta.json").unlink()
    os.mkfifo(folder / "meta.json")
    outcome, waiting = _within(10, _small().save, folder)
    _unblock(folder / "meta.json")
    assert not waiting, "save() still waits on the pipe meta.json"
    assert isinstance(outcome.get("error"), FileExistsError)


def test_saving_over_a_record_replaces_a_link_it_holds_and_leaves_its_target(tmp_path):
    """A record folder from elsewhere with offsets.npy linked to one of the user's files: saving a record there
    (a corpus saved back where it was loaded from) wrote the offsets over that file."""
    folder = _small().save(tmp_path / "record")
    victim = tmp_path / "notes.txt"
    victim.write_text("my notes")
    (folder / "offsets.npy").unlink()
    (folder / "offsets.npy").symlink_to(victim)
    _small().save(folder)
    assert victim.read_text() == "my notes"
    assert not (folder / "offsets.npy").is_symlink() and len(load(folder)) == 3


def test_a_record_of_a_thousand_layers_draws_a_picture_of_bounded_size():
    """One token of 1,024 layers drew a 10 × 248 inch picture: 800 × 19,836 px and 7 s for its display (20,000
    layers took a minute)."""
    r = Routing([1], np.zeros((1, 1024, 1), int), np.full((1, 1024, 1), 1.0), num_experts=2)
    picture = static_bundle(r)["image/png"]
    width, height = int.from_bytes(picture[16:20], "big"), int.from_bytes(picture[20:24], "big")
    assert width <= 24 * 80 and height <= 24 * 80, (width, height)


def test_a_record_of_more_layers_than_a_model_has_is_refused_in_one_line(tmp_path):
    """An 843-byte record folder saying 10**6 layers loaded, and its load() took 145 MB (10**9: 145 GB)."""
    folder = Routing([], np.zeros((0, 2, 1), int), np.zeros((0, 2, 1)), num_experts=8).save(tmp_path / "record")
    meta = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text(meta.replace('"layers": 2', '"layers": 1000000'))
    for name in ("experts", "weights"):
        np.save(folder / f"{name}.npy", np.zeros((0, 10 ** 6, 1), np.load(folder / f"{name}.npy").dtype))
    with pytest.raises(ValueError, match=r"is not a valid routing record: meta.json has layers = 1000000, past the "
                                         r"1024 a record holds$"):
        load(folder)
    with pytest.raises(ValueError, match=r"^a routing record holds at most 1024 layers, not 1025$"):
        Routing([1], np.zeros((1, 1025, 1), int), np.ones((1, 1025, 1)), num_experts=2)
    assert Routing([1], np.zeros((1, 1024, 1), int), np.ones((1, 1024, 1)), num_experts=2).layers == 1024


def test_a_record_of_a_huge_top_k_is_refused_in_one_line(tmp_path):
    """A record folder saying top_k = 10**6 (no tokens, a few bytes) loaded, and its coactivation() asked numpy for
    the 5 * 10**11 pairs of a token's picks: a MemoryError, or the kernel's memory."""
    folder = Routing([], np.zeros((0, 2, 1), int), np.zeros((0, 2, 1)), num_experts=8).save(tmp_path / "record")
    meta = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text(meta.replace('"top_k": 1', '"top_k": 1000000'))
    for name in ("experts", "weights"):
        np.save(folder / f"{name}.npy", np.zeros((0, 2, 10 ** 6), np.load(folder / f"{name}.npy").dtype))
    with pytest.raises(ValueError, match=r"is not a valid routing record: meta.json has top_k = 1000000, past the "
                                         r"256 a record holds$"):
        load(folder)
    with pytest.raises(ValueError, match=r"^a routing record holds at most 256 experts per token and layer \(top-k\), "
                                         r"not 257$"):
        Routing([1], np.zeros((1, 1, 257), int), np.ones((1, 1, 257)), num_experts=2)
    assert Routing([1], np.zeros((1, 1, 256), int), np.ones((1, 1, 256)), num_experts=2).top_k == 256


def test_the_card_of_an_expert_no_token_chose_draws_without_warnings():
    """It warned "No artists with labels found to put in legend"."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _small().expert_card(0, 3).plot()
        _small().expert_card(0, 0).plot()  # drawn as before


def test_the_route_changes_of_no_tokens_draw_without_warnings():
    """They warned "Attempting to set identical low and high xlims"."""
    empty = _small().select(slice(0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty.route_changes(empty).plot()


@pytest.fixture(scope="module")
def session():
    from gptoss_lab import Session

    return Session.load("tiny", progress=False, dtype="float32", session_options={"approval": "auto"})


@pytest.mark.parametrize("ids, shown", [([5, 10 ** 9], 10 ** 9), ([-1, 5], -1), ([201088], 201088)])
def test_route_refuses_token_ids_past_the_vocabulary_in_one_line(session, ids, shown):
    """They reached the model's embedding: "IndexError: index out of range in self"."""
    from gptoss_lab.routing import route

    with pytest.raises(ValueError, match=rf"^token ids go from 0 to 201087 \(the model's vocabulary\), not {shown}$"):
        route([ids], session, progress=False)
    assert len(route([[5, 201087]], session, progress=False).combined) == 2


def test_labels_with_a_lone_surrogate_display():
    """Labels from undecodable file names: every display of the record (its summary, its view's labels) failed in
    the kernel with "UnicodeEncodeError: surrogates not allowed"."""
    from jupyter_client.session import json_packer

    r = Routing([1, 2], np.zeros((2, 1, 2), int), np.full((2, 1, 2), 0.5), ["\ud800.txt", "x"], num_experts=4)
    assert r.labels == ["\\ud800.txt", "x"]
    json_packer({"summary": repr(r), "labels": r.view().labels})  # what the kernel sends
    corpus = Corpus(r, [0, 1, 2], ["\ud800.txt", None], {"path": "/data/\ud800"})
    json_packer({"summary": repr(corpus), "labels": corpus.doc_labels})
    r.view().close()


def test_a_record_file_naming_a_label_with_a_lone_surrogate_is_refused(tmp_path):
    folder = _small().save(tmp_path / "record")
    meta = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text(meta.replace('"user"', '"\\ud800"'))
    with pytest.raises(ValueError, match=r"meta.json's label_names is not a list of at most 255 texts of at most "
                                         r"100 characters$"):
        load(folder)


def test_a_label_of_thousands_of_characters_is_refused_in_one_line(tmp_path):
    """A view sends every token's label: a 170 kB record folder naming a 10,000-character label made a 200 MB
    comm message for its 20,000 tokens when displayed."""
    folder = _small().save(tmp_path / "record")
    meta = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text(meta.replace('"user"', '"' + "x" * 10_000 + '"'))
    with pytest.raises(ValueError, match=r"label_names is not a list of at most 255 texts of at most 100 characters$"):
        load(folder)
    r = _small()
    with pytest.raises(ValueError, match=r"^a label is a name of at most 100 characters \(a channel, a category\), "
                                         r"not one of 10,000$"):
        r.relabel(["x" * 10_000, "a", "b"])
    assert r.labels == ["user"] * 3
    r.relabel(["x" * 100, "a", "b"])
    one_line = r"^a label is a name of at most 100 characters \(a channel, a category\), not one of 10,000$"
    with pytest.raises(ValueError, match=one_line):  # a text's label was taken whole (a Corpus's, route's labels=)
        Corpus(r, [0, 3], ["x" * 10_000])
    with pytest.raises(ValueError, match=one_line):  # and a table's per-token labels
        r.label_load(["x" * 10_000] * 3)


@pytest.mark.parametrize("limit", ["1GB", None, float("nan"), -1, True])
def test_route_refuses_a_memory_limit_that_is_no_number_of_bytes_at_once(session, limit):
    """"1GB" was "TypeError: '>' not supported between instances of 'int' and 'str'" after the first batch."""
    from gptoss_lab.routing import route

    error, bound = (ValueError, " ≥ 0") if isinstance(limit, (int, float)) and not isinstance(limit, bool) else (TypeError, "")
    with pytest.raises(error, match=rf"^memory_limit must be a number of bytes{bound}, not {limit!r}$"):
        route(["hi", "yo"], session, memory_limit=limit, progress=False)


def test_route_refuses_one_text_as_labels(session):
    """labels="ab" labelled two texts "a" and "b"."""
    from gptoss_lab.routing import route

    with pytest.raises(TypeError, match=r"^labels is a list of one label per text, not one text: "
                                        r"labels=\[label\] \* len\(texts\)$"):
        route(["hi", "yo"], session, labels="ab", progress=False)
    assert route(["hi", "yo"], session, labels=["ab"] * 2, memory_limit=1.5e9, progress=False).doc_labels == ["ab"] * 2


@pytest.mark.parametrize("ids, shown", [([5, 10 ** 9], 10 ** 9), ([5, -1], -1)])
def test_token_effect_refuses_token_ids_past_the_vocabulary_in_one_line(session, ids, shown):
    """They reached the model's embedding: "IndexError: index out of range in self"."""
    from gptoss_lab.routing import disable

    with pytest.raises(ValueError, match=rf"^token ids go from 0 to 201087 \(the model's vocabulary\), not {shown}$"):
        disable({0: [1]}).token_effect(session, ids)
    assert len(disable({0: [1]}).token_effect(session, [5, 201087])) == 1


def test_a_record_from_elsewhere_with_a_huge_meta_or_odd_values_is_refused_in_one_line(tmp_path):
    """A sparse meta.json of 4 kB on disk and 600 MB in size took 1.3 GB to read (larger ones all the memory);
    `"seconds": 10**400` loaded and then failed the corpus's repr, 1e999 showed as "inf s"; a document label that was a
    dict or a list was taken (a review)."""

    folder = _small().save(tmp_path / "record")
    meta = json.loads((folder / "meta.json").read_text())
    sparse = tmp_path / "sparse"
    shutil.copytree(folder, sparse)
    with open(sparse / "meta.json", "r+b") as file:
        file.truncate(600_000_000)  # holes: a few kB on disk
    with pytest.raises(ValueError, match="meta.json: 600,000,000 bytes, past the 64 MiB a record's meta.json holds$"):
        load(sparse)
    for key, value, why in (("seconds", 10**400, "seconds = 1000"), ("seconds", -1, "seconds = -1"),
                            ("doc_labels", [{"a": 1}], "doc_labels is not a list of 1 labels"),
                            ("doc_labels", ["x" * 101], "a text of at most 100 characters or null")):
        (folder / "meta.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ValueError, match=why):
            Corpus.load(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "tokens": ["t" * 10**6]}))
    with pytest.raises(ValueError, match=r"meta.json has tokens = \['t{12}\.\.\.t{13}'\], not a whole number ≥ 0$"):
        Corpus.load(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "format": "\x1b[2J\u202e" + "x" * 10**6, "version": "v" * 10**6}))
    with pytest.raises(ValueError) as error:  # was the megabyte of each, the ESC sequence and U+202E raw
        Corpus.load(folder)
    assert str(error.value) == (f"{folder} holds '\\x1b[2J\\u202e{'x' * 35}'… version '{'v' * 40}'…, not a "
                                "gptoss_lab.routing record this gptoss_lab can read (version ≤ 1)")
    (folder / "meta.json").write_text(json.dumps({**meta, "seconds": 2.5, "doc_labels": ["owls"]}))
    assert Corpus.load(folder).doc_labels == ["owls"]


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_offsets_that_go_back_are_refused_whatever_their_integer_type(tmp_path, dtype):
    """Unsigned offsets [0, 2, 1, 3] passed the check (np.diff wraps around on unsigned numbers): load() took the
    record, and Corpus.load failed later without naming the folder."""
    folder = _small().save(tmp_path / "record")
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(documents=3, doc_labels=[None] * 3)
    (folder / "meta.json").write_text(json.dumps(meta))
    np.save(folder / "offsets.npy", np.array([0, 2, 1, 3], dtype=dtype))
    with pytest.raises(ValueError) as error:
        load(folder)
    assert str(error.value) == f"{folder} is not a valid routing record: offsets.npy does not split 3 tokens into documents"


@pytest.mark.parametrize("under", [5, ["disable"], "lone \udc80 surrogate"])
def test_an_intervention_in_meta_json_that_is_no_text_is_refused(tmp_path, under):
    """A record's intervention is shown with it (repr, Corpus): one from elsewhere must be text that displays."""
    folder = _small().save(tmp_path / "record")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "intervention": under}))
    with pytest.raises(ValueError) as error:
        load(folder)
    assert str(error.value) == f"{folder} is not a valid routing record: meta.json's intervention is not a text"
