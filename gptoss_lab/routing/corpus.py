"""Routing over a corpus without generating: `route(texts_or_conversations, model)` -> `Corpus`.

Prefill only (one forward pass per batch, no sampling), batched, with a progress bar. Texts are
sorted by length inside windows of a few batches to keep padding small; results keep the input
order. Memory stays bounded: past `memory_limit` (or from the start when `path` is given) the
record is streamed to a record folder and read back memory-mapped, so a 10,000-text run is done once.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from numbers import Number
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import harmony
from ..events import Interrupted, counted, ctrl_c_says
from ..session import _deferred_interrupts
from ..widgets import text_bar
from ..widgets.sanitize import shown_text
from .analysis import Labels, described, flag, label_texts, whole
from .interventions import in_force
from .record import (RecordWriter, Routing, check_vocabulary, check_weights, read_record, shown_intervention,
                     token_labels, whole_ids)

_PAD = 0          # right padding: causal attention never lets a real token see it
_WINDOW = 8       # batches whose texts are sorted by length together
_SPILL = 64 << 20  # bytes buffered at most before they are written, once writing to a folder


class Corpus(Sequence[Routing]):
    """The routing of many texts: `corpus[i]` is text i's `Routing` (a view, no copy), `combined`
    all tokens as one record (for the analyses), `doc_labels` the label given to each text."""

    def __init__(self, combined: Routing, offsets: Sequence[int], doc_labels: Sequence[str | None] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        if not isinstance(combined, Routing):  # a list of records was "offsets must rise from 0 to 2"
            raise TypeError(f"a Corpus is all its texts' tokens as one Routing and where each text starts (offsets), "
                            f"not {described(combined)}: route(texts, model) makes one")
        self.combined = combined
        given = np.asarray(offsets)
        if given.size and given.dtype.kind not in "iu":  # 1.5 was cut to 1: another split into texts
            raise ValueError(f"offsets are whole numbers of tokens, not {given.dtype} values")
        self.offsets = given.astype(np.int64)
        ends = self.offsets[[0, -1]].tolist() if self.offsets.ndim == 1 and len(self.offsets) else None
        if ends != [0, len(combined)] or (np.diff(self.offsets) < 0).any():  # a text past the end was cut short
            raise ValueError(f"offsets must rise from 0 to {len(combined)}, the tokens of combined")
        if isinstance(doc_labels, str):  # one label per character, as route() refuses
            raise TypeError("doc_labels is a list of one label per text, not one text: [label] * len(texts)")
        doc_labels = [None] * len(self) if doc_labels is None else doc_labels
        if len(doc_labels) != len(self):
            raise ValueError(f"{counted(len(doc_labels), 'label')} for {counted(len(self), 'text')}: "
                             "give one label per text")
        self.doc_labels = label_texts(doc_labels)
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= whole(i, "a text's index") < len(self):
            raise IndexError(f"text {i} of {len(self)}")
        i %= len(self)
        return self.combined.select(slice(int(self.offsets[i]), int(self.offsets[i + 1])))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def document(self) -> np.ndarray:
        """Which text each token of `combined` comes from."""
        return np.repeat(np.arange(len(self)), self.lengths)

    def token_labels(self) -> Labels:
        """Each token's text label (what `label_load`/`label_divergence` take as `labels`), a pandas Categorical."""
        names = sorted({str(label) for label in self.doc_labels if label is not None})
        code = {name: i for i, name in enumerate(names)}
        per_doc = np.asarray([code.get(str(label), -1) if label is not None else -1 for label in self.doc_labels],
                             np.int64)
        return Labels.from_codes(np.repeat(per_doc, self.lengths), names)

    def label_load(self, by: str = "text") -> Any:
        """Expert load per text label (`by="text"`) or per Harmony channel (`by="channel"`)."""
        return self.combined.label_load(self._labels(by))

    def label_divergence(self, by: str = "text") -> Any:
        """Per layer, how differently the text labels (or channels) are routed (bits)."""
        return self.combined.label_divergence(self._labels(by))

    def _labels(self, by: str) -> pd.Categorical | None:
        if by not in ("text", "channel"):
            raise ValueError(f"by must be 'text' (the labels given to route) or 'channel', not {by!r}")
        if by == "channel":
            return None
        if all(label is None for label in self.doc_labels):
            raise ValueError("these texts have no labels: give route(..., labels=[...]) or use by='channel'")
        return self.token_labels()

    def save(self, path: str | Path) -> Path:
        """Write every text's routing to the record folder `path` (see `Corpus.load`)."""
        r = self.combined
        check_weights(r)  # before the writer empties the folder
        meta = {**self.meta, "path": str(Path(path).expanduser())}   # the copy's own folder, not the one it came from
        with RecordWriter(path, layers=r.layers, top_k=r.top_k, num_experts=r.num_experts, meta=meta) as writer:
            writer.append(r, self.lengths.tolist(), self.doc_labels)
        return writer.path

    @classmethod
    def load(cls, path: str | Path) -> Corpus:
        """A record folder written by `route(..., path=)` or `save`, memory-mapped."""
        combined, offsets, doc_labels, meta = read_record(path)
        # where it is stored is where it was read (a copied or moved folder named the folder it was first written to)
        return cls(combined, offsets, doc_labels, {**meta, "path": str(Path(path).expanduser())})

    def view(self) -> Any:
        """The routing widget over all tokens (see `Routing.view`)."""
        return self.combined.view()

    def __repr__(self) -> str:
        extra = f", {self.meta['seconds']:.1f} s" if "seconds" in self.meta else ""
        # its folder's name written out as a label is (a record unpacked from elsewhere: its ESC, its U+202E reversing the line)
        where = f", stored in {shown_text(self.meta['path'])}" if "path" in self.meta else ""
        if isinstance(self.meta.get("intervention"), str):  # last: its words have commas of their own (meta.json's)
            where += f"; routed under an intervention: {shown_intervention(self.meta['intervention'])}"
        empty = int((self.lengths == 0).sum())   # an empty text routes no token: said, not left to the count
        empties = f" ({empty} of them empty)" if empty else ""
        r = self.combined  # a path with a lone surrogate (meta.json from elsewhere) failed the display
        return harmony.clean(f"Corpus({counted(len(self), 'text')}{empties}, {counted(len(r), 'token')} × "
                             f"{counted(r.layers, 'layer')} × top-{r.top_k} of {counted(r.num_experts, 'expert')}"
                             f"{extra}{where})")


def route(
    items: Iterable[Any],
    model: Any,
    *,
    batch_size: int = 8,
    labels: Sequence[str | None] | None = None,
    path: str | Path | None = None,
    memory_limit: int = 1 << 30,
    progress: bool = True,
) -> Corpus:
    """The expert routing of every text or conversation in `items`, by prefill only (nothing generated).

    Items: plain strings (tokens labelled "text"), conversations (lists of Harmony messages, or
    objects with a `messages` list; tokens labelled by channel), or token ids (or objects with
    `ids`, such as gpt-oss-tiny's generated conversations). `model`: a Session, a LocalEngine or a
    transformers GptOss model in this kernel. `labels` gives each item a label (e.g. "code", "math") for `Corpus.label_load`. With `path`, the
    record is written there as it is made; without, it stays in memory until it passes
    `memory_limit` bytes, then streams to a temporary folder (a warning says where). Texts longer
    than the model's context are cut to it.
    """
    from ..engines.checkpoint import fit_experts
    from ..engines.hooks import RouterHooks, model_of

    if isinstance(items, str):  # would be routed as one text per character
        raise TypeError("route takes a list of texts, not one text: route([text], model)")
    if whole(batch_size, "batch_size") < 1:  # np.int64(8) was refused; 2.5 and "8" are TypeErrors
        raise ValueError(f"batch_size must be a whole number of texts ≥ 1, not {batch_size!r}")
    batch_size = int(batch_size)
    if isinstance(memory_limit, (bool, np.bool_)) or not isinstance(memory_limit, (int, float, np.integer,
                                                                                    np.floating)):
        raise TypeError(f"memory_limit must be a number of bytes, not {memory_limit!r}")  # "1GB" failed after a batch
    if not memory_limit >= 0:  # NaN too
        raise ValueError(f"memory_limit must be a number of bytes ≥ 0, not {memory_limit!r}")
    if path is not None and not isinstance(path, (str, os.PathLike)):  # path=8 failed inside pathlib, model loaded
        raise TypeError(f"path must be a folder's path (a str or Path), not {type(path).__name__}")
    if isinstance(labels, str):  # would be one label per character
        raise TypeError("labels is a list of one label per text, not one text: labels=[label] * len(texts)")
    progress = flag(progress, "progress")  # "no" showed the bar
    engine, net = model_of(model)
    fit_experts(net)
    items = list(items)
    labels = list(labels) if labels is not None else None   # a generator, as items may be ("has no len()")
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"{counted(len(labels), 'label')} for {counted(len(items), 'text')}: give one label per text")
    labels = label_texts(labels) if labels is not None else None
    config = net.config
    context = int(getattr(config, "max_position_embeddings", 0) or 1 << 30)
    vocab = int(getattr(config, "vocab_size", harmony.VOCAB_SIZE))
    chunk = int(getattr(engine, "prefill_chunk", 2048))
    store = _Store(config, path, memory_limit, name=getattr(engine, "name", None), intervention=in_force(net))
    started = time.perf_counter()
    # the finished bar stays: it says what ran (one cleared left a line of spaces in the saved output)
    bar = text_bar(total=len(items), desc="routing", unit="text", disable=not progress)
    current: tuple[int, list[Any], list[Any]] = (0, [], [])   # the window being routed: its first text's index,
    # its texts, their routing as each is done; Ctrl-C says what the corpus the block always finishes with holds
    with ctrl_c_says(lambda: _interrupted(corpus, len(items))):
        try:
            with RouterHooks(net) as hooks:
                for start in range(0, len(items), batch_size * _WINDOW):
                    window = [_tokens_of(item, context, vocab) for item in items[start:start + batch_size * _WINDOW]]
                    current = (start, window, [None] * len(window))
                    _route_window(net, hooks, [ids for ids, _ in window], batch_size, chunk, bar, current[2])
                    store.keep(*current, labels)
        except KeyboardInterrupt:   # the texts of the window routed before its first unrouted one are kept too
            store.keep(*current, labels)
            raise
        finally:   # a second Ctrl-C here lost the texts routed: it waits until they are kept
            with _deferred_interrupts():
                bar.close()
                corpus = store.finish(seconds=time.perf_counter() - started)
    return corpus


def _interrupted(corpus: Corpus, total: int) -> Interrupted:
    """What Ctrl-C during `route` says: how far it got and where the texts it finished are kept."""
    done = len(corpus)
    if not done:
        return Interrupted(f"route stopped (Ctrl-C) before the first of {counted(total, 'text')} was routed: "
                           "nothing was kept")
    where = (f"in {corpus.meta['path']!r}: Corpus.load(that folder)" if "path" in corpus.meta else
             Interrupted.IN_KEPT)
    return Interrupted(harmony.clean(f"route stopped (Ctrl-C) after {done:,} of {counted(total, 'text')}: the {done:,} "
                                     f"routed are kept {where}"), kept=corpus)


def _tokens_of(item: Any, context: int, vocab: int) -> tuple[list[int], list[str]]:
    """(token ids, label per token) of one item: text, conversation or ids (of the model's `vocab`)."""
    if isinstance(item, str):
        ids = harmony.encode_text(item)
        labels = ["text"] * len(ids)
    else:
        messages = getattr(item, "messages", getattr(item, "ids", item))
        if isinstance(messages, (list, tuple)) and messages and all(hasattr(m, "author") for m in messages):
            ids = harmony.render(messages, keep_analysis_from=0)[:-2]  # the conversation as it happened
            if messages[-1].author.role.value == "assistant" and ids and ids[-1] == harmony.END:
                ids[-1] = harmony.RETURN  # a finished turn ends as the model ended it
        elif isinstance(messages, (list, tuple, np.ndarray)) and all(isinstance(t, (Number, np.number, np.bool_))
                                                                     for t in messages):
            ids = whole_ids(messages)   # [True, False] was routed as tokens 1 and 0, as token_effect refuses
            check_vocabulary(ids, vocab)
        else:
            raise TypeError(f"route takes texts, conversations (lists of Harmony messages) or token ids, "
                            f"not {type(item).__name__}")
        labels = token_labels(ids)
    return ids[:context], labels[:context]


def _route_window(net: Any, hooks: Any, sequences: list[list[int]], batch_size: int, chunk: int,
                  bar: Any, results: list[Any]) -> None:
    """Routing of each sequence into `results` (in order, each set as it is done: Ctrl-C leaves those done): short
    ones batched by length, long ones alone in chunks."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    with torch.inference_mode():
        short = [i for i in order if 0 < len(sequences[i]) <= chunk]
        for b in range(0, len(short), batch_size):
            batch = short[b:b + batch_size]
            width = len(sequences[batch[-1]])
            ids = torch.full((len(batch), width), _PAD, dtype=torch.long, device=_device(net))
            for row, i in enumerate(batch):
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            net(input_ids=ids, use_cache=False, logits_to_keep=1)
            experts, weights = hooks.take()  # rows: batch-major, `width` positions each
            for row, i in enumerate(batch):
                span = slice(row * width, row * width + len(sequences[i]))
                results[i] = (experts[span], weights[span])
            bar.update(len(batch))
        for i in order:
            if len(sequences[i]) > chunk:
                results[i] = _route_long(net, hooks, sequences[i], chunk)
                bar.update(1)
            elif not sequences[i]:
                results[i] = (np.zeros((0, hooks.layers, hooks.top_k), np.int16),
                              np.zeros((0, hooks.layers, hooks.top_k), np.float32))
                bar.update(1)


def _route_long(net: Any, hooks: Any, ids: list[int], chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """A sequence longer than one prefill chunk: chunk by chunk over a KV cache (bounded attention memory)."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=net.config)
    parts = []
    for start in range(0, len(ids), chunk):
        piece = torch.tensor([ids[start:start + chunk]], dtype=torch.long, device=_device(net))
        net(input_ids=piece, cache=cache, use_cache=True, logits_to_keep=1)
        parts.append(hooks.take())
    return np.concatenate([e for e, _ in parts]), np.concatenate([w for _, w in parts])


def _device(net: Any) -> Any:
    return net.get_input_embeddings().weight.device


class _Store:
    """Where `route` puts finished texts: memory until the limit, then (or from the start) a record folder."""

    def __init__(self, config: Any, path: str | Path | None, memory_limit: int, name: str | None,
                 intervention: str | None) -> None:
        self.config, self.limit = config, memory_limit
        self.meta = {"model": name} if name else {}
        if intervention:
            self.meta["intervention"] = intervention
        self.routing = self._empty()
        self.lengths: list[int] = []
        self.labels: list[str | None] = []
        self.writer: RecordWriter | None = None
        self.count = 0   # texts added so far (written to the folder or not)
        if path is not None:
            self._open(Path(path).expanduser())

    def _empty(self) -> Routing:
        """No tokens yet, in the model's shape: a corpus of empty texts still has the model's layers and top-k
        (it said "0 layers × top-0"); the first tokens routed set the top-k (an intervention may change it)."""
        shape = (0, int(self.config.num_hidden_layers), int(self.config.num_experts_per_tok))
        routing = Routing(num_experts=int(self.config.num_local_experts))
        routing.append([], np.zeros(shape, np.int16), np.zeros(shape, np.float32))
        return routing

    def _open(self, path: Path) -> None:
        self.meta["path"] = str(path)
        self.writer = RecordWriter(path, layers=int(self.config.num_hidden_layers),
                                   top_k=int(self.config.num_experts_per_tok),
                                   num_experts=int(self.config.num_local_experts), meta=self.meta)

    def keep(self, start: int, window: list[tuple[list[int], list[str]]], routed: list[Any],
             labels: Sequence[str | None] | None) -> None:
        """Add the texts of `window` (text `start` first; its (ids, channels), and (experts, weights) once `routed`)
        not added yet, in order, up to the first not routed."""
        for offset in range(self.count - start, len(window)):
            if routed[offset] is None:
                break
            (ids, channels), (experts, weights) = window[offset], routed[offset]
            routing = Routing(ids, experts, weights, channels, num_experts=int(self.config.num_local_experts))
            check_weights(routing, f" of text {start + offset}")  # refused before it is stored
            self.add(routing, labels[start + offset] if labels is not None else None)

    def add(self, routing: Routing, label: str | None) -> None:
        if len(routing) and len(self.routing) and routing.experts.shape[1:] != self.routing.experts.shape[1:]:
            raise ValueError("the model's routing changed shape between texts (an intervention on top-k?)")
        if len(routing):
            self.routing.append(routing.tokens, routing.experts, routing.weights, routing.labels)
        self.lengths.append(len(routing))
        self.labels.append(label)
        self.count += 1
        if self.writer is None and self._bytes() > self.limit:
            folder = Path(tempfile.mkdtemp(prefix="gptoss_lab-routing-"))
            warnings.warn(f"the routing passed memory_limit={self.limit:,} bytes: streaming it to {folder} "
                          f"(memory-mapped; give route(..., path=...) to choose the folder)", stacklevel=4)
            self._open(folder)
        if self.writer is not None and self._bytes() > min(self.limit, _SPILL):
            self._spill()

    def _per_token(self) -> int:
        return 4 + 1 + int(self.config.num_hidden_layers) * int(self.config.num_experts_per_tok) * 6

    def _bytes(self) -> int:
        return len(self.routing) * self._per_token()

    def _spill(self) -> None:
        assert self.writer is not None
        self.writer.append(self.routing, self.lengths, self.labels)
        self.routing = self._empty()
        self.lengths, self.labels = [], []

    def finish(self, seconds: float) -> Corpus:
        """The corpus of everything added (read back from the folder when it was streamed)."""
        self.meta["seconds"] = round(seconds, 3)
        if self.writer is None:
            offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])
            # its texts' records say it, as those of a corpus read from a folder do (they read as the model's own)
            self.routing.intervention = self.meta.get("intervention", "")
            return Corpus(self.routing, offsets, self.labels, self.meta)
        self._spill()
        self.writer.meta.update(self.meta)
        self.writer.close()
        return Corpus.load(self.writer.path)
