"""Routing.to_frame at corpus scale: a token's text and label, repeated on each of its layers × k rows, are
categoricals (they took ~120 bytes a row as text), and the frame still reads as before."""
from __future__ import annotations

import numpy as np

from gptoss_lab import harmony
from gptoss_lab.routing import Routing


def _corpus(tokens: int = 3000, layers: int = 24, k: int = 4) -> Routing:
    """gpt-oss-20b's shape (24 layers, top-4 of 32) over real Harmony text: a conversation repeated."""
    ids = harmony.render([harmony.system_message("low", date="2025-01-01"),
                          harmony.user_message("What is 37 * 12? Show the steps, then the answer."),
                          harmony.assistant_message("37 * 12 = 37 * 10 + 37 * 2 = 370 + 74 = 444.", "final")],
                         keep_analysis_from=0)
    ids = (ids * (tokens // len(ids) + 1))[:tokens]
    rng = np.random.default_rng(0)
    return Routing(ids, rng.integers(0, 32, (tokens, layers, k)), rng.random((tokens, layers, k), np.float32),
                   harmony.label_tokens(ids), num_experts=32)


def test_the_frame_of_a_corpus_takes_a_few_kilobytes_a_token():
    frame = _corpus().to_frame()
    per_token = frame.memory_usage(deep=True).sum() / 3000
    assert per_token < 3000  # 96 rows a token: it was 15,000 bytes (120 a row for the text and label alone)


def test_the_frame_reads_as_before():
    r = _corpus(200, layers=3, k=2)
    frame = r.to_frame()
    assert list(frame.columns) == ["position", "token", "text", "label", "layer", "rank", "expert", "weight"]
    final = frame[(frame.label == "final") & (frame.layer == 2) & (frame["rank"] == 1)]
    tokens = np.flatnonzero(r.mask("final"))
    assert final.position.tolist() == tokens.tolist() and final.text.tolist() == [r.strings[t] for t in tokens]
    assert final.expert.tolist() == r.experts[tokens, 2, 1].tolist()
    assert frame[frame.text == "<|start|>"].token.eq(harmony.START).all() and frame[frame.label == "nothing"].empty
    assert sorted(frame.label.value_counts().index) == sorted(set(r.labels))  # only the labels present
    assert frame.sort_values("text", kind="stable").text.tolist() == sorted(frame.text.tolist())
    assert [(int(t), str(s)) for t, s in zip(frame.token, frame.text)][:2] == [(r.tokens[0], r.strings[0])] * 2
    assert len(Routing(num_experts=4).to_frame()) == 0
