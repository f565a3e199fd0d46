"""The routing record: which experts every token went to, kept compactly, saved and loaded as columns.

`Routing` is what a `Reply` carries and what `route` makes per text: tokens × layers × top-k expert
ids and gate weights, the token ids and the label of every token (its Harmony channel). `Recorder`
collects a turn's routing for the engine. On disk a record is a folder of .npy columns (expert ids
as uint8 when there are at most 128 experts, weights as 16-bit fixed point) and a meta.json, written
as it is made and read back memory-mapped, so records larger than memory stay usable.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import reprlib
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import harmony
from ..events import counted
from ..widgets.sanitize import shown_text
from . import analysis
from .analysis import MAX_LABEL

FORMAT = "gptoss_lab.routing"
VERSION = 1
_WRITE_ROWS = 1 << 16  # tokens written per slice
_HEADER = 128  # bytes of each .npy header: fixed, so a column can be appended to and its shape rewritten
_TEXTS: dict[int, str] = {}  # token id -> its text, decoded once
MAX_EXPERT = 32767  # expert ids are int16
MAX_LAYERS = 1024  # layers of a record at most (models have tens): an 843-byte record folder saying 10**6 made
                   # its load() take 145 MB, and a view lists every layer in its menu
MAX_TOP_K = 256  # experts a token picks per layer at most (models pick 1-16): co-activation counts k² pairs
_REPR_LABELS = 8  # labels a record's repr names at most (the rest are counted)
_SHORT_VALUE = 40  # characters of a meta.json's text an error names at most
_SHOWN_WORDS = 300  # characters of its intervention a record's summary shows at most (a file's may hold megabytes)
_PIECE = re.compile("[\udc80-\udcff]+")  # bytes of a piece of a character, as "surrogateescape" decodes them
_SERIALS = itertools.count()  # a record's contents' number: a new one after each change
_PART_VIEWS: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()  # see Routing.view


def token_texts(ids: Any) -> list[str]:
    """The text of each token id (special tokens spelled out); each distinct id is decoded once."""
    ids = np.asarray(ids)
    if not len(ids):
        return []
    distinct, inverse = np.unique(ids, return_inverse=True)
    for token in distinct.tolist():
        if token not in _TEXTS:
            _TEXTS[token] = _token_text(token)
    return np.asarray([_TEXTS[t] for t in distinct.tolist()], dtype=object)[inverse].tolist()


def _token_text(token: int) -> str:
    """One token's text; the bytes of it that are a piece of a character (byte-level BPE) written as byte fallback
    writes them, `<0xE2 0x80>`: decoded, every such piece read "\ufffd", told apart by its id alone."""
    text = harmony.decode([token])
    data = harmony.token_bytes(token) if "\ufffd" in text else None
    if data is None:
        return text
    return _PIECE.sub(lambda run: f"<{' '.join(f'0x{ord(c) - 0xDC00:02X}' for c in run.group())}>",
                      data.decode("utf-8", "surrogateescape"))


def shown_intervention(words: str) -> str:
    """An intervention's words as summaries say them: at most `_SHOWN_WORDS` characters, cut before they are written
    out as `shown_text` writes them (cut after, a summary ended inside an escape, `\\u20 …`)."""
    return shown_text(words[:_SHOWN_WORDS]) + (" …" if len(words) > _SHOWN_WORDS else "")


def token_labels(ids: Sequence[int]) -> list[str]:
    """Each token's label: its Harmony channel or role in a rendered conversation, "text" in plain text."""
    return harmony.label_tokens(ids) if harmony.START in ids else ["text"] * len(ids)


def fixed16(weights: np.ndarray) -> np.ndarray:
    """Gate weights in 0..1 as uint16 fixed point (weight × 65535): what record files carry."""
    return np.rint(np.clip(weights, 0, 1) * 65535).astype("<u2")


def check_weights(routing: Routing, where: str = "") -> None:
    """Refuse, in one line naming the token and layer, gate weights that are no share in 0..1 (NaN from a
    broken router, logits given as weights): a record keeps weights as 16-bit fixed point, where NaN was
    stored as 0 and 7.5 as 1, plausible numbers. Memory-bounded; weights read from a file are always valid."""
    if routing._weights.dtype == np.uint16:
        return
    half = 0.5 / 65535  # what still rounds into 0..1
    for start in range(0, len(routing), _WRITE_ROWS):
        weights = routing.weights[start:start + _WRITE_ROWS]
        bad = ~((weights >= -half) & (weights <= 1 + half))  # NaN compares False
        if bad.any():
            token, layer, slot = np.argwhere(bad)[0]
            value = float(weights[token, layer, slot])
            raise ValueError(f"token {start + token}{where} has gate weight {value:g} in layer {layer}, not a share "
                             f"in 0..1 (did the router produce NaN?): a routing record cannot hold it")


def whole_ids(tokens: Sequence[Any] | np.ndarray) -> list[int]:
    """Token ids as a list of ints, or a one-line TypeError naming the first one that is no whole number (True was
    token 1, 1.7 token 1): the one wording for every way ids come in (a record's, `route`'s, `token_effect`'s)."""
    for token in tokens:
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
            shown = token.item() if isinstance(token, np.generic) else token  # 1.5, not np.float64(1.5)
            raise TypeError(f"token ids are whole numbers, not {shown!r}")
    return [int(token) for token in tokens]


def check_vocabulary(ids: Sequence[int], vocab: int) -> None:
    """Refuse, in one line, token ids outside a model's `vocab` ids: torch said "index out of range in self"."""
    if len(ids) and not 0 <= min(ids) <= max(ids) < vocab:
        raise ValueError(f"token ids go from 0 to {vocab - 1} (the model's vocabulary), "
                         f"not {min(ids) if min(ids) < 0 else max(ids)}")


def _one_per_token(labels: Any, n: int) -> None:
    """Refuse, in one line, labels that are not one text per token of `n`."""
    if isinstance(labels, str):  # was one label per character
        raise TypeError("labels is a list of one label per token, not one text: [label] * len(tokens)")
    try:
        count = len(labels)
    except TypeError:  # a number was "object of type 'int' has no len()"
        raise TypeError(f"labels is a list of one label per token, not {analysis.described(labels)}") from None
    if count != n:
        raise ValueError(f"{counted(count, 'label')} for {counted(n, 'token')}")


def _gate_weights(weights: Any) -> np.ndarray:
    """`weights` as float32, refusing what is no number: "0.5" was read as 0.5, True as 1, None as NaN."""
    given = np.asarray(weights)
    if given.size and given.dtype.kind not in "iuf":
        raise TypeError(f"gate weights are numbers in 0..1, not {given.dtype} values")
    return given.astype(np.float32)


def _selection(which: Any, n: int) -> tuple[Any, ...]:
    """What `select(which)` takes of a record of `n` tokens, as a key: equal for the same tokens."""
    if isinstance(which, slice):
        return which.indices(n)
    which = np.ascontiguousarray(which)
    return which.dtype.str, which.shape, hashlib.blake2b(which.tobytes(), digest_size=16).digest()


def _token_ids(tokens: Any) -> np.ndarray:
    """`tokens` as ids, refusing what no Harmony token is: a record saved with it could not be loaded back."""
    ids = np.asarray(tokens)
    if ids.ndim != 1:  # a number was "object of type 'int' has no len()"
        raise TypeError(f"tokens are a list of token ids, one per token, not {analysis.described(tokens)}")
    if ids.size and ids.dtype.kind not in "iu":  # 1.9 was cut to token 1; said as `route` says it ("not float64 values")
        ids = np.asarray(whole_ids(ids))  # ints in an object array go on to the range check (2**70 too)
    if ids.size and (ids.min() < 0 or ids.max() >= harmony.VOCAB_SIZE):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"token ids go from 0 to {harmony.VOCAB_SIZE - 1} (the Harmony vocabulary), not {int(bad)}")
    return ids


class Routing:
    """Which experts every token went to: tokens × layers × top-k ids and gate weights.

    `experts` (integers; -1 = an empty slot) and `weights` (float32) have shape [tokens, layers, k];
    `tokens` are the ids, `strings` their text and `labels` the part of the conversation each belongs
    to (one of `harmony.LABELS`, "text" for plain text; "" while unknown during streaming, which the label
    analyses leave out, as they do a text's label None or ""). It grows
    with `append`, and views registered with `observe` are told, so a widget can update live.

    The analyses (`load`, `top_tokens`, `label_load`, `transitions`, `agreement` ...) are the
    functions of `gptoss_lab.routing.analysis`, also available as methods.
    """

    def __init__(
        self,
        tokens: Sequence[int] = (),
        experts: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        labels: Sequence[str] | None = None,
        *,
        num_experts: int | None = None,
    ) -> None:
        self._n = 0
        self._tokens = np.zeros(0, np.int32)
        self._experts: np.ndarray = np.zeros((0, 0, 0), np.int16)
        self._weights: np.ndarray = np.zeros((0, 0, 0), np.float32)
        self._codes = np.zeros(0, np.uint8)          # label of each token, as an index into _names
        self._names: list[str] = []
        self._strings: list[str] = []                # texts decoded so far (lazily, see `strings`)
        self._view: Any = None                       # the RoutingView of `view`, made once
        self._serial = next(_SERIALS)                # these contents (parts selected from them share views)
        self._family: tuple[Any, ...] | None = None  # (the record's serial, selection, experts) of a part
        self.num_experts = num_experts
        self._owned = True                           # buffers are ours to write and grow (not a view or a file)
        self._intervention = ""                      # see `intervention`
        self._observers: list[Callable[[str, int], None]] = []
        tokens = _token_ids(tokens)
        if len(tokens) or experts is not None:  # no tokens yet in a given shape keeps its [layers, k]
            self.append(tokens, experts, weights, labels)

    @classmethod
    def from_arrays(cls, tokens: np.ndarray, experts: np.ndarray, weights: np.ndarray, codes: np.ndarray,
                    names: Sequence[str], *, num_experts: int | None = None) -> Routing:
        """A record over existing arrays, without copying them (slices, memory-mapped files).

        `weights` may be float or uint16 fixed point (see `fixed16`); `codes` index into `names`."""
        r = cls(num_experts=num_experts)
        r._tokens, r._experts, r._weights, r._codes = tokens, experts, weights, codes
        r._names, r._n, r._owned = list(names), len(tokens), False
        return r

    # ------------------------------------------------------------ data

    @property
    def tokens(self) -> np.ndarray:
        return self._tokens[: self._n]

    @property
    def experts(self) -> np.ndarray:
        return self._experts[: self._n]

    @property
    def weights(self) -> np.ndarray:
        """float32 [tokens, layers, k] (records loaded from a file convert on first use)."""
        if self._weights.dtype == np.uint16:
            analysis.fits_in_memory(self._weights[: self._n].size * 4, f"the gate weights of {self._n:,} tokens as float32")
            weights = self._weights[: self._n].astype(np.float32)
            weights /= np.float32(65535)   # in place: a second array the size of the first had the kernel killed
            self._weights = weights
        return self._weights[: self._n]

    @property
    def labels(self) -> list[str]:
        return np.asarray(self._names or [""], dtype=object)[self.label_codes].tolist()

    @property
    def label_codes(self) -> np.ndarray:
        """Each token's label as an index into `label_names` (fast masks for large records)."""
        return self._codes[: self._n].astype(np.int64)

    @property
    def label_names(self) -> list[str]:
        return list(self._names)

    @property
    def strings(self) -> list[str]:
        """Each token's text (decoded when first asked for)."""
        if len(self._strings) < self._n:
            self._strings += token_texts(self._tokens[len(self._strings): self._n])
        return self._strings

    @property
    def layers(self) -> int:
        return self._experts.shape[1]

    @property
    def top_k(self) -> int:
        return self._experts.shape[2]

    @property
    def num_experts(self) -> int:
        """Experts per layer: as given, else one more than the largest id seen."""
        if self._num_experts is not None:
            return self._num_experts
        return int(self.experts.max()) + 1 if self.experts.size else 0

    @num_experts.setter
    def num_experts(self, value: int | None) -> None:
        # a count the ids do not fit is refused: an id past it was counted in the next layer, past 32768 it wrapped
        if value is not None:
            seen = int(self.experts.max()) + 1 if self.experts.size else 0
            if not seen <= analysis.whole(value, "num_experts") <= MAX_EXPERT + 1:
                raise ValueError(f"num_experts must be from {seen} to {MAX_EXPERT + 1}, not {value}"
                                 + (f" (this record has expert {seen - 1})" if seen else ""))
            value = int(value)
        self._num_experts = value
        self._changed()

    @property
    def intervention(self) -> str:
        """How the routers were changed while this was recorded, in words ("" = as the model routes)."""
        return self._intervention

    @property
    def intervention_shown(self) -> str:
        """`intervention` as the record's summaries say it (its repr, its view's): its first 300 characters, written as
        `shown_text` writes them (a record's meta.json from elsewhere: its ESC sequence, its U+202E reversing the line)."""
        return shown_intervention(self._intervention)

    @intervention.setter
    def intervention(self, words: str) -> None:
        # views are told: a turn's record learns it as the turn ends, after its view's output was put in place
        if not isinstance(words, str):  # saved, then refused on load ("meta.json's intervention is not a text")
            raise TypeError(f"intervention is how the routers were changed, in words, not {analysis.described(words)}")
        self._intervention = harmony.clean(words)
        self._notify("intervention", 0)

    def __len__(self) -> int:
        return self._n

    def mask(self, label: str) -> np.ndarray:
        """Boolean mask of the tokens with this label (none for a Harmony label this record lacks)."""
        if label not in self._names:
            if label not in (*harmony.LABELS, "text"):
                raise ValueError(f"no label {label!r}: this record has {', '.join(map(repr, self._names)) or 'none'} "
                                 f"(or a Harmony label: {', '.join(harmony.LABELS)})")
            return np.zeros(self._n, bool)
        return self.label_codes == self._names.index(label)

    def select(self, which: Any) -> Routing:
        """The record of some tokens: a slice (no copy) or a boolean mask / index array (a copy).
        Parts selected alike (`corpus[0]` twice, one mask in a loop) share one view until either record changes."""
        if isinstance(which, (int, np.integer)):  # "object of type 'numpy.int32' has no len()"
            hint = "a mask has one True or False per token" if isinstance(which, bool) else \
                f"select([{which!r}]) is the record of that one token"  # select([True]) was no such record
            raise TypeError(f"select takes a slice, a boolean mask or token positions, not {which!r}: {hint}")
        if not isinstance(which, slice):  # numpy said "only integers, slices (`:`), ellipsis ... are valid indices"
            given, which = which, np.asarray(which)
            if which.ndim != 1 or (which.size and which.dtype.kind not in "biu"):
                raise TypeError(f"select takes a slice, a boolean mask or token positions, "
                                f"not {analysis.described(given)}")
            if which.dtype.kind == "b" and len(which) != self._n:  # "boolean index did not match indexed array"
                raise ValueError(f"a mask of {counted(len(which), 'value')} for a record of {counted(self._n, 'token')}: "
                                 f"give one True or False per token")
            # numpy said "index 999 is out of bounds for axis 0 with size 12"
            if which.dtype.kind in "iu" and which.size and not -self._n <= which.min() <= which.max() < self._n:
                wrong = int(which.max() if which.max() >= self._n else which.min())
                raise IndexError(f"this record has {analysis.numbered(self._n, 'token', True)}: "
                                 f"there is no token {wrong}")
            if not which.size:  # [] is float64: numpy's "arrays used as indices must be of integer (or boolean) type"
                which = which.astype(np.intp)
        key = _selection(which, self._n)
        if isinstance(which, slice):
            start, stop, step = which.indices(self._n)
            which = slice(start, stop) if step == 1 else np.arange(start, stop, step)
        # the weights as stored (a loaded file's uint16): `weights` converted the whole file to float32 first
        part = Routing.from_arrays(self.tokens[which], self.experts[which], self._weights[: self._n][which],
                                   self._codes[: self._n][which], self._names, num_experts=self.num_experts)
        part._family = (self._serial, key, part.num_experts)
        part._intervention = self._intervention
        return part

    def _code(self, labels: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """`labels` as indices into `names` (default: this record's label names) plus the labels new to them,
        which become the record's names; refused whole, the record left as it was, for a label that is no
        text (meta.json could not hold it: the record saved, then failed to load) or a 256th label."""
        names = list(self._names if names is None else names)
        texts: dict[str, str] = {}
        for label in dict.fromkeys(labels):
            if not isinstance(label, str):
                raise TypeError(f"labels are texts (a Harmony channel, 'text' ...), not {label!r}")
            texts[label] = analysis.label_text(label)
            if texts[label] not in names:
                names.append(texts[label])
        if len(names) > 255:
            raise ValueError("a routing record holds at most 255 different labels")
        index = {name: i for i, name in enumerate(names)}
        codes = np.fromiter((index[texts[label]] for label in labels), np.uint8, len(labels))
        self._names = names
        return codes

    def append(self, tokens: Sequence[int], experts: np.ndarray, weights: np.ndarray,
               labels: Sequence[str] | None = None) -> None:
        """Add tokens at the end (labels default to "" = not known yet) and tell the observers."""
        tokens = _token_ids(tokens)
        if experts is None or weights is None:
            raise ValueError(f"need experts and weights of shape [{len(tokens)}, layers, k] for {counted(len(tokens), 'token')}")
        experts, weights = self._expert_ids(experts), _gate_weights(weights)
        n = len(tokens)
        if experts.ndim != 3 or experts.shape[0] != n or weights.shape != experts.shape:
            raise ValueError(f"need experts and weights of shape [{n}, layers, k] for {counted(n, 'token')}, "
                             f"got {experts.shape} and {weights.shape}")
        if labels is not None:
            _one_per_token(labels, n)
        if experts.shape[1] > MAX_LAYERS:
            raise ValueError(f"a routing record holds at most {MAX_LAYERS} layers, not {experts.shape[1]}")
        if experts.shape[2] > MAX_TOP_K:
            raise ValueError(f"a routing record holds at most {MAX_TOP_K} experts per token and layer (top-k), "
                             f"not {experts.shape[2]}")
        if self._n == 0 and self._experts.shape[1:] != experts.shape[1:]:
            self._experts = np.zeros((0, *experts.shape[1:]), np.int16)
            self._weights = np.zeros((0, *experts.shape[1:]), np.float32)
        if experts.shape[1:] != self._experts.shape[1:]:
            raise ValueError(f"routing of shape [layers, k] = {list(experts.shape[1:])} does not match "
                             f"{list(self._experts.shape[1:])}")
        codes = self._code(labels if labels is not None else [""] * n)
        start = self._n
        self._reserve(start + n)
        self._tokens[start:start + n] = tokens
        self._experts[start:start + n] = experts
        self._weights[start:start + n] = weights
        self._codes[start:start + n] = codes
        self._n = start + n
        self._notify("append", start)

    def _expert_ids(self, experts: Any) -> np.ndarray:
        """`experts` as int16, refusing ids outside -1..num_experts - 1 (they would be counted in another layer)."""
        experts = np.asarray(experts)
        if experts.dtype.kind not in "iuf":  # True was expert 1
            raise TypeError(f"expert ids are whole numbers (-1 = an empty slot), not {experts.dtype} values")
        if experts.dtype.kind == "f" and not (experts % 1 == 0).all():  # 2.7 was cut to 2, NaN became expert 0
            raise ValueError(f"expert ids are whole numbers (-1 = an empty slot), not {experts[experts % 1 != 0][0]}")
        top = (self._num_experts if self._num_experts is not None else MAX_EXPERT + 1) - 1
        if experts.size and (experts.min() < -1 or experts.max() > top):
            bad = experts.min() if experts.min() < -1 else experts.max()
            raise ValueError(f"expert ids go from 0 to {top} (-1 = an empty slot), not {int(bad)}")
        return experts.astype(np.int16)

    def _reserve(self, size: int) -> None:
        """Own growable buffers, grown geometrically so that appending one token at a time stays linear."""
        if self._owned and size <= len(self._tokens):
            return
        cap = max(size, 2 * len(self._tokens), 64)
        for name, old, dtype in (("_tokens", self.tokens, np.int32), ("_experts", self.experts, np.int16),
                                 ("_weights", self.weights, np.float32), ("_codes", self._codes[: self._n], np.uint8)):
            new = np.zeros((cap, *old.shape[1:]), dtype)
            new[: self._n] = old
            setattr(self, name, new)
        self._owned = True

    def truncate(self, n: int) -> None:
        """Keep the first `n` tokens (views redraw from scratch)."""
        if analysis.whole(n, "n") < 0:  # -1 made the record's length -1 (len() failed)
            raise ValueError(f"truncate keeps the first n tokens: n must be at least 0, not {n}")
        self._n = min(n, self._n)
        del self._strings[self._n:]
        self._notify("reset", 0)

    def relabel(self, labels: Sequence[str]) -> None:
        """Set every token's label (the session does this once the turn's ids are known)."""
        _one_per_token(labels, self._n)
        codes = self._code(labels, [])
        if not self._owned:
            self._codes = np.array(self._codes[: self._n], np.uint8)
        self._codes[: self._n] = codes
        self._notify("labels", 0)

    def observe(self, callback: Callable[[str, int], None]) -> None:
        """Call `callback(kind, start)` after each change: kind "append" (tokens from `start` are
        new), "labels" (labels changed), "intervention" (its words changed) or "reset" (tokens were dropped)."""
        self._observers.append(callback)

    def unobserve(self, callback: Callable[[str, int], None]) -> None:
        if callback in self._observers:
            self._observers.remove(callback)

    def _notify(self, kind: str, start: int) -> None:
        self._changed()
        for callback in list(self._observers):
            callback(kind, start)

    # ------------------------------------------------------------ analyses (gptoss_lab.routing.analysis)

    def load(self, channel: str | None = None) -> analysis.Load:
        """Per-layer expert load over all tokens, or over the tokens of one channel (label)."""
        return analysis.load(self, channel)

    def channel_load(self) -> dict[str, analysis.Load]:
        """Expert load of each channel present, in order of appearance."""
        return analysis.channel_load(self)

    def coactivation(self, layer: int | None = None, experts: Sequence[int] | None = None) -> np.ndarray:
        """[experts, experts] counts of tokens that chose both experts together (of `experts` only, if given)."""
        return analysis.coactivation(self, layer, experts)

    def entropy(self) -> np.ndarray:
        """Entropy (bits) of each layer's expert load (NaN where a layer has no picks)."""
        return analysis.entropy(self)

    def compare(self, other: Routing, top: int = 10) -> analysis.Comparison:
        """Contrast two routings' expert usage layer by layer (Jensen–Shannon divergence of load)."""
        return analysis.compare(self, other, top)

    def to_frame(self) -> analysis.Frame:
        """A tidy pandas DataFrame (a `Frame`), one row per expert pick (token, layer, rank); empty slots have none."""
        return analysis.to_frame(self)

    def top_tokens(self, n: int = 10, **options: Any) -> analysis.Table:
        """For each expert, the token ids it is chosen for most (see `analysis.top_tokens`)."""
        return analysis.top_tokens(self, n, **options)

    def token_concentration(self, min_count: int = 5) -> analysis.Table:
        """Token-id vs context routing per token id and layer (see `analysis.token_concentration`)."""
        return analysis.token_concentration(self, min_count)

    def label_load(self, labels: Sequence[str] | None = None) -> analysis.Table:
        """Expert load per label and layer; `.plot()` is the specialisation heat map."""
        return analysis.label_load(self, labels)

    def label_divergence(self, labels: Sequence[str] | None = None) -> analysis.Table:
        """Per layer, how differently the labels are routed (bits; NaN where a layer has no picks)."""
        return analysis.label_divergence(self, labels)

    def transitions(self, layer: int | None = None, **options: Any) -> analysis.Table:
        """How often expert i in layer l is followed by expert j in layer l+1."""
        return analysis.transitions(self, layer, **options)

    def hot_and_cold(self, top: int | None = None) -> analysis.Table:
        """Busiest and least used experts per layer, and the share the busiest take."""
        return analysis.hot_and_cold(self, top)

    def agreement(self, other: Routing) -> analysis.Table:
        """Per layer, top-k overlap and top-1 agreement with another record of the same tokens."""
        return analysis.agreement(self, other)

    def route_changes(self, other: Routing) -> analysis.Table:
        """Per token, in how many layers its route differs in another record of the same tokens."""
        return analysis.route_changes(self, other)

    def expert_card(self, layer: int, expert: int, n: int = 8) -> analysis.ExpertCard:
        """What one expert does here: top tokens, load by label, transitions."""
        return analysis.expert_card(self, layer, expert, n)

    # ------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write the record to the folder `path` (compact .npy columns + meta.json); read it back with
        `gptoss_lab.routing.load(path)`."""
        check_weights(self)  # before the writer empties the folder
        meta = {"intervention": self.intervention} if self.intervention else None   # an ablated run stays one
        with RecordWriter(path, layers=self.layers, top_k=self.top_k, num_experts=self.num_experts, meta=meta) as writer:
            writer.append(self)
        return writer.path

    # ------------------------------------------------------------ display

    def figure(self, kind: str = "grid", *, channel: str | None = None, layer: int | None = None) -> Any:
        """A matplotlib Figure for papers and static notebooks: kind "grid" (top-1 expert per token
        and layer) or "load" (expert load of one layer as bars, or of all layers as a heat map)."""
        from ..widgets.routing_figures import routing_figure

        return routing_figure(self, kind, channel=channel, layer=layer)

    def view(self) -> Any:
        """The interactive RoutingView widget of this routing (updates live while it grows): one per record,
        shown again by each display, until closed (re-running a cell made a new one each time, each kept in
        the kernel with a copy of the record)."""
        from ..widgets.routing import RoutingView

        if self._view is None or self._view.comm is None:  # a closed widget has no comm
            shared = _PART_VIEWS.get(self._family) if self._family is not None else None
            # a part selected alike before shows its view: `corpus[0]` made a new widget at each display
            self._view = shared if shared is not None and shared.comm is not None else RoutingView(self)
            if self._family is not None:
                _PART_VIEWS[self._family] = self._view
        return self._view

    def _changed(self) -> None:
        """The contents changed: parts selected from now on, and this record if it is a part, get views of their own."""
        self._serial = next(_SERIALS)
        if self._family is not None:
            if self._view is not None and self._view.routing is not self:
                self._view = None  # another part's view, of the tokens as selected
            else:
                _PART_VIEWS.pop(self._family, None)  # this view follows this record, no longer the selection
            self._family = None

    def __repr__(self) -> str:
        counts, order = self._label_counts()
        # a label's controls written out: its ESC sequence reached terminals from the saved summary, its U+202E
        # reversed the line (the still image's title too)
        if [self._names[i] for i in order] == [""]:  # no labels at all: said by none, as a Corpus's texts' (was "? 1")
            order = []
        parts = ", ".join(f"{shown_text(self._names[i]) or 'unlabelled'} {counts[i]}" for i in order[:_REPR_LABELS])
        if len(order) > _REPR_LABELS:  # 255 labels made a 2,500-character line (and the still image's title)
            parts += f" and {len(order) - _REPR_LABELS} more labels"
        under = f"; routed under an intervention: {self.intervention_shown}" if self.intervention else ""
        return (f"Routing({counted(self._n, 'token')} × {counted(self.layers, 'layer')} × "
                f"top-{self.top_k} of {counted(self.num_experts, 'expert')}" + (f"; {parts}" if parts else "")
                + under + ")")

    def _label_counts(self) -> tuple[np.ndarray, list[int]]:
        """(tokens per label code, the codes present in order of first appearance), in one pass of bounded
        memory: a pass per label (255 labels over a million tokens) slowed every display of the record."""
        counts = np.zeros(len(self._names), np.int64)
        first: dict[int, int] = {}
        for start in range(0, self._n, _WRITE_ROWS):
            codes = np.asarray(self._codes[start:min(start + _WRITE_ROWS, self._n)])
            counts += np.bincount(codes, minlength=len(self._names))[: len(self._names)]
            if len(first) < len(self._names):
                seen, where = np.unique(codes, return_index=True)
                for code, position in zip(seen.tolist(), where.tolist()):
                    first.setdefault(code, start + position)
        return counts, sorted(first, key=first.__getitem__)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget where widgets render, with a PNG grid and a text summary as fallbacks."""
        from ..widgets.routing import routing_bundle

        return routing_bundle(self)


class Recorder:
    """Collects a turn's routing token by token for the engine; `finish` labels it for the session.

    `routing` is the live record from the start, so a view can show it while tokens stream.
    Engines that know the model's expert count set `num_experts` (otherwise it is inferred).
    """

    def __init__(self, num_experts: int | None = None) -> None:
        self.routing = Routing(num_experts=num_experts)
        self._cursor = 0

    def begin(self) -> None:
        """A new engine call starts: its prompt repeats the turn so far, which is recorded once."""
        self._cursor = 0

    @property
    def tokens(self) -> list[int]:
        """The ids recorded so far (prompt, then generated), to label them."""
        return self.routing.tokens.tolist()

    @property
    def num_experts(self) -> int:
        return self.routing.num_experts

    @num_experts.setter
    def num_experts(self, value: int | None) -> None:
        self.routing.num_experts = value

    def add(self, tokens: Sequence[int], experts: np.ndarray, weights: np.ndarray) -> None:
        """Record the routing of `tokens` (prompt positions, then each generated token, in order)."""
        tokens = _token_ids(tokens).tolist()
        if len(experts) != len(tokens):
            hint = (" The routers were not called: a fused MoE kernel (e.g. MXFP4 on GPU) may bypass them."
                    if len(experts) == 0 else "")
            raise ValueError(f"routing for {counted(len(experts), 'position')} given with {counted(len(tokens), 'token')}.{hint}")
        have = self.routing.tokens[self._cursor: self._cursor + len(tokens)].tolist()
        same = next((i for i, (a, b) in enumerate(zip(have, tokens)) if a != b), len(have))
        if self._cursor + same < len(self.routing):  # the prompt differs from what was recorded
            self.routing.truncate(self._cursor + same)
        self._cursor += len(tokens)
        if same < len(tokens):
            self.routing.append(tokens[same:], experts[same:], weights[same:])

    def finish(self, labels: Sequence[str]) -> Routing:
        """Label every token (see `harmony.label_tokens`) and return the finished Routing."""
        self.routing.relabel(labels)
        return self.routing


# ---------------------------------------------------------------- the file format


def _npy_header(dtype: Any, shape: tuple[int, ...]) -> bytes:
    """A .npy (version 1.0) header of exactly `_HEADER` bytes."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    body = text.ljust(_HEADER - 11) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


class _Column:
    """One .npy file that grows by appending rows; its header is rewritten with the final row count."""

    def __init__(self, path: Path, dtype: Any, row: tuple[int, ...]) -> None:
        self.path, self.dtype, self.row, self.rows = path, np.dtype(dtype), row, 0
        path.unlink(missing_ok=True)  # a record read from here stays mapped to the old file (no truncation under it)
        self.file = open(path, "wb")
        self.file.write(_npy_header(self.dtype, (0, *row)))

    def append(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, self.dtype).tobytes())
        self.rows += len(values)

    def close(self) -> None:
        self.file.flush()
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, (self.rows, *self.row)))
        self.file.close()


class RecordWriter:
    """Writes routing to a record folder as it is made (`route` streams here past its memory limit).

    Each `append` adds whole documents (texts), so a run stopped half-way (Ctrl-C, an error) still
    leaves a valid record of what was done; `close` (or leaving the `with`) writes the meta.json.
    """

    def __init__(self, path: str | Path, *, layers: int, top_k: int, num_experts: int,
                 meta: dict[str, Any] | None = None) -> None:
        try:  # refused before anything is written: meta.json is written last, once the columns are done
            json.dumps(meta, allow_nan=False)  # NaN is no JSON: the record saved, then failed to load
        except (TypeError, ValueError) as error:
            raise TypeError(f"a routing record's meta must be JSON data: {error}") from None
        self.path = _folder(path)
        reusable = self.path.is_dir() and (not any(self.path.iterdir()) or _is_record(self.path))
        if self.path.exists() and not reusable:
            raise FileExistsError(f"{self.path} exists and is not a routing record: choose another path")
        self.path.mkdir(parents=True, exist_ok=True)
        self.num_experts = num_experts
        self.meta = dict(meta or {})
        self.names: list[str] = []
        self.ends: list[int] = []
        self.doc_labels: list[str | None] = []
        self.empty_slots = False
        self.columns = {"tokens": _Column(self.path / "tokens.npy", "<i4", ()),
                        "labels": _Column(self.path / "labels.npy", "u1", ())}
        self._wide(layers, top_k)

    def _wide(self, layers: int, top_k: int) -> None:
        """(Re)start the [layers, k] columns: until tokens are written, the first routing appended sets their
        shape (a top-k intervention routes with another k than the model's)."""
        for name in ("experts", "weights"):
            if name in self.columns:
                self.columns[name].file.close()
        self.layers, self.top_k = layers, top_k
        self.columns["experts"] = _Column(self.path / "experts.npy", "u1" if self.num_experts <= 128 else "<u2",
                                          (layers, top_k))
        self.columns["weights"] = _Column(self.path / "weights.npy", "<u2", (layers, top_k))

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tokens(self) -> int:
        return self.ends[-1] if self.ends else 0

    def append(self, routing: Routing, lengths: Sequence[int] | None = None,
               doc_labels: Sequence[str | None] | None = None) -> None:
        """Add `routing` as documents of `lengths` tokens (default: one document), with their labels."""
        lengths = [len(routing)] if lengths is None else list(lengths)
        if sum(lengths) != len(routing):
            raise ValueError(f"document lengths add up to {sum(lengths):,}, not {counted(len(routing), 'token')}")
        check_weights(routing)  # before any row is written: fixed point stored a NaN as 0
        if len(routing) and routing.experts.shape[1:] != (self.layers, self.top_k):
            if self.columns["experts"].rows:
                raise ValueError(f"routing of [layers, k] = {list(routing.experts.shape[1:])} does not fit this "
                                 f"record's {[self.layers, self.top_k]}")
            self._wide(*routing.experts.shape[1:])
        remap = np.asarray([self._name(name) for name in routing.label_names] or [0], np.uint8)
        ids = self.columns["experts"].dtype
        for start in range(0, len(routing), _WRITE_ROWS):  # in slices: bounded memory for any record
            end = min(start + _WRITE_ROWS, len(routing))
            experts = np.asarray(routing.experts[start:end])
            self.empty_slots |= bool((experts < 0).any())
            weights = routing._weights[start:end]
            self.columns["tokens"].append(routing.tokens[start:end])
            self.columns["experts"].append(experts.astype(ids))  # an empty slot (-1) wraps to the all-ones id
            self.columns["weights"].append(weights if weights.dtype == np.uint16 else fixed16(weights))
            self.columns["labels"].append(remap[routing._codes[start:end]])
        for length in lengths:
            self.ends.append(self.tokens + length)
        self.doc_labels += list(doc_labels) if doc_labels is not None else [None] * len(lengths)

    def _name(self, label: str) -> int:
        if label not in self.names:
            self.names.append(label)
        return self.names.index(label)

    def close(self) -> None:
        """Finish the columns and write meta.json (what a reader checks first)."""
        if not self.columns:
            return
        for column in self.columns.values():
            column.close()
        self.columns = {}
        for name in ("offsets.npy", "meta.json"):  # a link there (a record from elsewhere) is replaced:
            (self.path / name).unlink(missing_ok=True)  # np.save wrote through it, over the file it named
        np.save(self.path / "offsets.npy", np.asarray([0, *self.ends], np.int64))
        meta = {**self.meta, "format": FORMAT, "version": VERSION, "tokens": self.tokens,  # a loaded record's
                "documents": len(self.ends), "layers": self.layers, "top_k": self.top_k,  # meta says what it held
                "num_experts": self.num_experts, "label_names": self.names, "doc_labels": self.doc_labels,
                "empty_slots": self.empty_slots}
        (self.path / "meta.json").write_text(json.dumps(meta, indent=1, allow_nan=False))


def _folder(path: Any) -> Path:
    """A record folder's path, refused in one line unless text or a Path (8 was Python's "expected str, bytes or
    os.PathLike object, not int"); "~/runs/a" is in the home folder, not a folder "~" here."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path is a record folder's path (text or a pathlib.Path), not {analysis.described(path)}")
    return Path(path).expanduser()


def _is_record(path: Path) -> bool:
    """Whether the folder holds a routing record, the only folder written over (any meta.json was: a project's own)."""
    try:
        meta = json.loads(_meta_text(path))
    except (OSError, ValueError, RecursionError):  # JSON nested past Python's recursion limit
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def load(path: str | Path) -> Routing:
    """A record folder (from `Routing.save`, `Corpus.save` or `route(..., path=)`), memory-mapped:
    all its tokens as one Routing (`Corpus.load` keeps the texts apart)."""
    return read_record(path)[0]


def read_record(path: str | Path) -> tuple[Routing, np.ndarray, list[str | None], dict[str, Any]]:
    """(all tokens as one memory-mapped Routing, document offsets, document labels, meta) of a record folder.

    Everything is checked against meta.json before use (a one-line ValueError says what is wrong): a
    file from another model, a damaged or hand-made one must not be counted as something else (an expert
    id past the record's expert count was counted in the next layer's load)."""
    path = _folder(path)
    try:
        meta = json.loads(_meta_text(path), parse_constant=_no_constant)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is not a routing record (no meta.json): save one with Routing.save or route(..., path=)") from None
    except (OSError, ValueError, RecursionError) as error:  # JSON nested past Python's recursion limit
        raise ValueError(f"{path} is not a valid routing record: meta.json: {error}") from None
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("format") != FORMAT or not isinstance(meta.get("version", 0), int) or meta.get("version", 0) > VERSION:
        raise ValueError(f"{path} holds {_meta_value(meta.get('format'))} version {_meta_value(meta.get('version'))}, "
                         f"not a {FORMAT} record this gptoss_lab can read (version ≤ {VERSION})")
    columns = {name: _column(path, name) for name in ("tokens", "experts", "weights", "labels", "offsets")}
    _check_record(meta, columns, lambda why: ValueError(f"{path} is not a valid routing record: {why}"))
    experts = columns["experts"]
    if meta.get("empty_slots"):  # the all-ones id stands for an empty slot (-1)
        signed = np.dtype(experts.dtype.str.replace("u", "i"))
        if meta["num_experts"] <= np.iinfo(signed).max + 1:  # read as signed, all-ones is -1: still memory-mapped
            experts = experts.view(signed)
        else:  # uint8 ids past 127 (129 to 254 experts, written so before): a converted copy
            experts = np.where(experts == np.iinfo(experts.dtype).max, np.int16(-1), experts.astype(np.int16))
    routing = Routing.from_arrays(columns["tokens"], experts, columns["weights"], columns["labels"],
                                  meta["label_names"], num_experts=meta["num_experts"])
    routing.intervention = meta.get("intervention") or ""
    return routing, np.array(columns["offsets"]), list(meta["doc_labels"]), meta  # a copy: np.save rewrites the file


def _meta_value(value: Any) -> str:
    """A value of a meta.json from elsewhere as an error names it: in short, escaped (its megabyte of "format", ESC
    sequence and U+202E included, was the error's text); a text cut before it is escaped (reprlib ended one in `\\u202`)."""
    if isinstance(value, str):
        return repr(value[:_SHORT_VALUE]) + ("…" if len(value) > _SHORT_VALUE else "")
    return reprlib.repr(value)


def _regular(file: Path) -> Path:
    """`file`, refused (OSError) where it is there but no regular file: reading a pipe (a record unpacked from a
    tar archive) or a device waited forever."""
    if file.exists() and not file.is_file():
        raise OSError("not a regular file (a pipe or a device is never read)")
    return file


MAX_META_BYTES = 64 * 2**20  # a record's meta.json (its labels; a million documents' fit)


def _meta_text(path: Path) -> str:
    """A record folder's meta.json, refused (OSError) when it is no regular file or larger than any record writes:
    a sparse file of 4 kB on disk and 600 MB in size took 1.3 GB to read, a larger one all the memory (a review)."""
    file = _regular(path / "meta.json")
    if file.stat().st_size > MAX_META_BYTES:
        raise OSError(f"{file.stat().st_size:,} bytes, past the {MAX_META_BYTES >> 20} MiB a record's meta.json holds")
    return file.read_text()


def _no_constant(name: str) -> None:
    """Refuse NaN and Infinity, which Python's json reads but JSON has not (a Corpus showed "nan s")."""
    raise ValueError(f"{name} is no JSON number")


def _column(path: Path, name: str) -> np.ndarray:
    """One .npy column, memory-mapped (never unpickled: object arrays are refused)."""
    try:
        column = np.load(_regular(path / f"{name}.npy"), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a valid routing record: {name}.npy: {error}") from None
    if not isinstance(column, np.ndarray):  # an .npz archive answers np.load too
        raise ValueError(f"{path} is not a valid routing record: {name}.npy is not a .npy array")
    return column


def _check_record(meta: dict[str, Any], columns: dict[str, np.ndarray], bad: Callable[[str], Exception]) -> None:
    """Raise `bad(why)` unless the columns have the shapes, types and values meta.json says."""
    sizes = {key: meta.get(key) for key in ("tokens", "documents", "layers", "top_k", "num_experts")}
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"meta.json has {key} = {_meta_value(value)}, not a whole number ≥ 0")  # was whole: a megabyte
    if sizes["num_experts"] > MAX_EXPERT + 1:  # every analysis allocates counts per expert
        raise bad(f"meta.json has num_experts = {sizes['num_experts']}, past the {MAX_EXPERT + 1} a record holds")
    if sizes["layers"] > MAX_LAYERS:  # and per layer
        raise bad(f"meta.json has layers = {sizes['layers']}, past the {MAX_LAYERS} a record holds")
    if sizes["top_k"] > MAX_TOP_K:  # co-activation counts each pair of a token's picks
        raise bad(f"meta.json has top_k = {sizes['top_k']}, past the {MAX_TOP_K} a record holds")
    seconds = meta.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e12:
        # what Corpus shows: 10**400 failed its repr (no float), 1e999 is read as inf
        raise bad(f"meta.json has seconds = {repr(seconds)[:40]}, not a number of seconds")
    names, doc_labels = meta.get("label_names"), meta.get("doc_labels")
    if (not isinstance(names, list) or len(names) > 255 or not all(
            isinstance(name, str) and len(name) <= MAX_LABEL and harmony.clean(name) == name for name in names)):
        raise bad(f"meta.json's label_names is not a list of at most 255 texts of at most {MAX_LABEL} characters")
    if len(set(names)) < len(names):  # the tokens of its second code were never counted under the label
        raise bad(f"meta.json's label_names has {next(n for i, n in enumerate(names) if n in names[:i])!r} twice")
    if not isinstance(doc_labels, list) or len(doc_labels) != sizes["documents"] or not all(
            label is None or isinstance(label, str) and len(label) <= MAX_LABEL and harmony.clean(label) == label
            for label in doc_labels):
        raise bad(f"meta.json's doc_labels is not a list of {sizes['documents']} labels (one per document, a text "
                  f"of at most {MAX_LABEL} characters or null)")
    under = meta.get("intervention")
    if under is not None and not (isinstance(under, str) and harmony.clean(under) == under):
        raise bad("meta.json's intervention is not a text")
    n, wide = sizes["tokens"], (sizes["layers"], sizes["top_k"])
    for name, shape in (("tokens", (n,)), ("experts", (n, *wide)), ("weights", (n, *wide)), ("labels", (n,)),
                        ("offsets", (sizes["documents"] + 1,))):
        column, kinds = columns[name], "iu" if name in ("tokens", "offsets") else "u"  # ids and codes: never negative
        if column.dtype.kind not in kinds or column.shape != shape or (name == "weights" and column.dtype != np.uint16):
            raise bad(f"{name}.npy holds {column.dtype} {list(column.shape)}, not the "
                      f"{'integers' if kinds == 'iu' else 'unsigned integers'} {list(shape)} meta.json says")
    offsets = np.asarray(columns["offsets"])
    if offsets[0] != 0 or offsets[-1] != n or (offsets[1:] < offsets[:-1]).any():   # np.diff wraps on unsigned
        raise bad(f"offsets.npy does not split {counted(n, 'token')} into documents")
    empty = np.iinfo(columns["experts"].dtype).max if meta.get("empty_slots") else None
    for start in range(0, n, _WRITE_ROWS):  # in slices: bounded memory for any record
        end = start + _WRITE_ROWS
        tokens, labels = columns["tokens"][start:end], columns["labels"][start:end]
        experts = columns["experts"][start:end]
        ids = experts if empty is None else experts[experts != empty]
        top = int(ids.max()) if ids.size else -1  # none: no layers, no slots, or all empty
        if tokens.min() < 0 or tokens.max() >= harmony.VOCAB_SIZE:
            raise bad(f"tokens.npy has token ids outside 0..{harmony.VOCAB_SIZE - 1} (the Harmony vocabulary)")
        if labels.max() >= len(names):
            raise bad(f"labels.npy has label {int(labels.max())} of {len(names)} label_names")
        if top >= sizes["num_experts"]:
            raise bad(f"experts.npy has expert {top}, past the {sizes['num_experts']} experts meta.json says "
                      f"(a record of another model?)")
