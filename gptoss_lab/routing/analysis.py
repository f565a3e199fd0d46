"""Analyses of routing records, vectorised (numpy) and bounded in memory at gpt-oss-120b shapes.

Each takes a `Routing` (tokens × layers × top-k expert ids) and returns numbers a reader can use
directly: per-layer load and entropy, expert co-activation, vocabulary specialisation (the tokens an
expert is chosen for, and how much a token's routing depends on its id rather than its context),
label specialisation with a divergence per layer, cross-layer transitions, hot and cold experts,
and agreement between two records of the same tokens. Tables are `Table`s: pandas DataFrames whose
`.plot()` draws the figure that fits them (widgets/routing_figures.py).

An expert slot of -1 means "no expert" (a top-k intervention gave that layer fewer picks); it is
never counted.
"""
from __future__ import annotations

import functools
import html
import os
import reprlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Number
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from ..events import counted
from ..widgets.sanitize import shown_text, spreadsheet_text, xlsx_text

if TYPE_CHECKING:
    from .record import Routing

_F = TypeVar("_F", bound=Callable[..., Any])
_CHUNK = 1 << 16  # tokens per step (at top-4 where a step's temporaries grow with k², see `_step`)
_CELLS = 1 << 24  # counts of an experts × experts analysis at most (128 MiB); past it, one counts a subset
MAX_LABEL = 100  # characters of a label: a view sends each token's (a 10,000-character one: 200 MB for 20,000 tokens)


def _kept(result: Any) -> Any:
    """A pandas result derived from a `Frame` or its column, as a `Frame` or `_Column` where pandas made it plain."""
    if type(result) is pd.DataFrame:
        return Frame(result)
    return _Column(result) if type(result) is pd.Series else result


def _keeping(plain: _F) -> _F:
    """pandas method `plain` whose result keeps the routing classes: pandas builds these from a plain DataFrame or
    Series, so `value_counts().to_frame()`, `describe()` or `agg([...])` of routing texts were typeset by MathJax."""
    @functools.wraps(plain)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _kept(plain(self, *args, **kwargs))
    return method  # type: ignore[return-value]


def _written(plain: _F, write: Callable[[str], str] = shown_text) -> _F:
    """pandas text method `plain` run on the texts as `write` writes them, every row: `to_string()` showed a label's
    ESC sequence, U+202E and zero-width characters raw, where `repr` writes them out (`shown_text`); `to_csv` and
    `to_excel` handed a spreadsheet a label `=cmd|' /C calc'!A0` as a formula (`spreadsheet_text`, `xlsx_text`)."""
    @functools.wraps(plain)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return plain(_written_texts(self, max(len(self), 1), write), *args, **kwargs)
    return method  # type: ignore[return-value]


def _csv(plain: _F) -> _F:
    """pandas' `to_csv` (`plain`) of the texts as `spreadsheet_text` writes them, its lines ended "\\r\\n" unless told
    otherwise (RFC 4180's): ended "\\n", a field holding a "\\r" but no "\\n" (the token "\\r") was not quoted, and a
    reader took it for a line end (its row became two, the columns after it shifted)."""
    written = _written(plain, spreadsheet_text)

    @functools.wraps(plain)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("lineterminator") is None:
            kwargs["lineterminator"] = "\r\n"
        return written(self, *args, **kwargs)
    return method  # type: ignore[return-value]


class Frame(pd.DataFrame):
    """A DataFrame of routing results (token and label texts in it), shown out of the notebook's MathJax: a text "$…$"
    was typeset as mathematics. What pandas derives from it (slices, sorts, groups, counts ...) is a Frame too;
    pandas' own functions (`pd.crosstab`, `pd.get_dummies`) build plain DataFrames: cross-tabulate two columns with
    `frame.crosstab("text", "expert")`, or wrap a result, `Frame(result)`."""

    value_counts = _keeping(pd.DataFrame.value_counts)
    describe = _keeping(pd.DataFrame.describe)
    agg = aggregate = _keeping(pd.DataFrame.aggregate)
    to_string = _written(pd.DataFrame.to_string)
    to_csv = _csv(pd.DataFrame.to_csv)
    to_excel = _written(pd.DataFrame.to_excel, xlsx_text)

    @property
    def _constructor(self) -> type[Frame]:
        return Frame

    def crosstab(self, index: str, columns: str, values: str | None = None, **options: Any) -> Frame:
        """`pd.crosstab` of two of these columns (`values`, a third, with `aggfunc`; `normalize`, `margins` as there)
        as a Frame: pandas' function builds a plain DataFrame, whose token texts the notebook typeset as mathematics."""
        named = [index, columns] + ([] if values is None else [values])
        missing = [name for name in named if name not in self.columns]
        if missing:  # was a KeyError
            raise ValueError(f"this table has no column {missing[0]!r}: it has {', '.join(map(repr, self.columns))}")
        return Frame(pd.crosstab(self[index], self[columns], None if values is None else self[values], **options))

    @property
    def _constructor_sliced(self) -> type[pd.Series]:
        return _Column

    def _repr_html_(self) -> str | None:
        """pandas' table out of MathJax's reach, as one HTML block (see `sanitize.one_html_block`), its texts written
        as `shown_text` writes them: pandas' HTML dropped a text's edge spaces ("the" and " the" read alike, a
        token of spaces as an empty cell) and let control and direction characters through."""
        from ..widgets.sanitize import NO_TYPESETTING, one_html_block

        table = pd.DataFrame._repr_html_(_written_texts(self))
        return None if table is None else one_html_block(f"<div class='{NO_TYPESETTING}'>{table}</div>")

    def __repr__(self) -> str:
        """pandas' plain-text table (a terminal's, a notebook's text/plain), its texts written as the HTML form writes
        them: it showed a label's ESC sequence raw and dropped a token's edge spaces."""
        return pd.DataFrame.__repr__(_written_texts(self))

    @property
    def style(self) -> Any:
        """pandas' Styler of this table with its texts written as its HTML form writes them, HTML-escaped, out of
        MathJax's reach: a Styler puts a cell's text into the page as HTML (a record's label `<img onerror=…>` ran in
        the notebook). Its `data` holds the texts as shown; the frame keeps the real ones, which its `to_excel` writes."""
        from ..widgets.sanitize import NO_TYPESETTING

        shown = _written_texts(self, len(self), lambda text: html.escape(shown_text(text)))
        styler = pd.DataFrame(shown, copy=False).style.set_table_attributes(f'class="{NO_TYPESETTING}"')
        styler.to_excel = functools.wraps(Styler.to_excel)(functools.partial(_styled_to_excel, styler, self))
        return styler


def _styled_to_excel(styler: Styler, frame: Frame, *args: Any, **kwargs: Any) -> None:
    """`styler.to_excel` of a `Frame.style`: the frame's own texts as `Frame.to_excel` writes them, with the Styler's
    colours; pandas' wrote the texts as the page shows them (`&lt;b&gt;`), and a label `=…` as a formula cell."""
    texts = _written_texts(frame, max(len(frame), 1), xlsx_text)
    Styler(pd.DataFrame(texts, copy=False)).use(styler.export()).to_excel(*args, **kwargs)


def _written_texts(frame: pd.DataFrame | pd.Series, ends: int | None = None,
                   write: Callable[[str], str] = shown_text) -> pd.DataFrame | pd.Series:
    """`frame` (or a column) as a plain DataFrame (Series) whose shown texts (values, index, column names) are written
    by `write`: only the `ends` rows at either end (those pandas may show), so millions of rows show at once."""
    ends = ends or pd.get_option("display.max_rows") or len(frame)
    if isinstance(frame, pd.Series):
        shown = pd.Series(_shown_values(pd.Series(frame, copy=False), ends, write), copy=False)
        shown.name = _shown_one(frame.name, write)
        return shown.set_axis(_shown_values(shown.index, ends, write))
    shown = pd.DataFrame(frame, copy=False)
    texts = [i for i, dtype in enumerate(shown.dtypes) if _holds_text(dtype)]
    if texts:
        shown = shown.copy(deep=False)
        for i in texts:
            shown.isetitem(i, _shown_values(shown.iloc[:, i], ends, write))
    return shown.set_axis(_shown_values(shown.index, ends, write), axis=0).set_axis(
        _shown_values(shown.columns, len(shown.columns), write), axis=1)


def _holds_text(dtype: Any) -> bool:
    """Whether values of `dtype` may be texts (objects, strings, categories)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return _holds_text(dtype.categories.dtype)
    return dtype == object or pd.api.types.is_string_dtype(dtype)


def _shown_one(value: Any, write: Callable[[str], str] = shown_text) -> Any:
    """A text as `write` writes it; any other value as it is."""
    return write(value) if isinstance(value, str) else value


def _shown_values(values: Any, ends: int, write: Callable[[str], str] = shown_text) -> Any:
    """A Series or Index whose texts are written by `write`: each category or level once, else only among its first
    and last `ends` (a table's rows past them are not shown)."""
    if isinstance(values, pd.MultiIndex):
        levels = [_shown_values(level, len(level), write) for level in values.levels]
        if all(level.is_unique for level in levels):
            return values.set_levels(levels)
        return pd.MultiIndex.from_arrays([_shown_values(values.get_level_values(i), ends, write)
                                          for i in range(values.nlevels)], names=values.names)
    if not _holds_text(values.dtype):
        return values
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = [_shown_one(name, write) for name in values.dtype.categories]
        if len(set(names)) == len(names):  # (" a" and "␣a" are shown alike: no two categories)
            return values.rename_categories(names) if isinstance(values, pd.Index) else \
                values.cat.rename_categories(names)
    array = np.asarray(values, dtype=object).copy()
    for part in ((slice(None),) if len(array) <= 2 * ends else (slice(None, ends), slice(-ends, None))):
        array[part] = [_shown_one(value, write) for value in array[part]]
    if isinstance(values, pd.Series):
        return pd.Series(array, index=values.index, name=values.name)
    return pd.Index(array, name=values.name)


class _Column(pd.Series):
    """A column of a `Frame`: frames made from it (`to_frame`, `unstack`, `reset_index`, `value_counts` ...) are
    `Frame`s."""

    value_counts = _keeping(pd.Series.value_counts)
    describe = _keeping(pd.Series.describe)
    agg = aggregate = _keeping(pd.Series.aggregate)
    to_string = _written(pd.Series.to_string)
    to_csv = _csv(pd.Series.to_csv)
    to_excel = _written(pd.Series.to_excel, xlsx_text)

    @property
    def _constructor(self) -> type[pd.Series]:
        return _Column

    @property
    def _constructor_expanddim(self) -> type[Frame]:
        return Frame

    def __repr__(self) -> str:
        """pandas' plain-text column, its texts written as a `Frame`'s are (see `Frame.__repr__`)."""
        return pd.Series.__repr__(_written_texts(self))


class Labels(pd.Categorical):
    """A label per token as a pandas Categorical: its categories are the labels as given (data to compute with), its
    printout writes them as `shown_text` does, as every table of them is (it showed a label's ESC sequence raw)."""

    def __repr__(self) -> str:
        names = [_shown_one(name) for name in self.categories]
        if len(set(names)) < len(names):  # " a" and "␣a" are shown alike: as Python writes them in quotes, both kept
            names = [_shown_one(name, lambda text: repr(text)[1:-1]) for name in self.categories]
        return pd.Categorical.__repr__(self.rename_categories(names))


class Table(Frame):
    """A `Frame` from a routing analysis; `.plot(**options)` draws its figure (matplotlib).

    Results derived from it (slices, sums ...) are `Frame`s, with pandas' own `.plot`."""

    _metadata = ["figure_kind", "figure_options"]

    def plot(self, **options: Any) -> Any:  # type: ignore[override]
        """The figure of this analysis (a matplotlib Figure); options depend on the analysis."""
        from ..widgets.routing_figures import draw

        return draw(self.figure_kind, self, **{**self.figure_options, **options})


def result_table(data: Any, kind: str, index: Any = None, columns: Any = None, **options: Any) -> Table:
    """A `Table` whose `.plot()` draws figure `kind` of widgets/routing_figures.py with `options`."""
    table = Table(data, index=index, columns=columns)
    table.figure_kind, table.figure_options = kind, options
    return table


class Load(NamedTuple):
    """Expert load per layer: how often each expert was in a token's top-k, and that as a share."""

    counts: np.ndarray  # int64 [layers, experts]
    share: np.ndarray   # float64 [layers, experts], rows sum to 1 (0 where no tokens)


class Comparison(NamedTuple):
    """How two routings differ: per-layer Jensen–Shannon divergence of expert load (bits, 0..1)
    and the (layer, expert, share here, share there) entries that differ most."""

    jsd: np.ndarray
    top: list[tuple[int, int, float, float]]

    def __repr__(self) -> str:
        if not len(self.jsd):  # max() of no layers raised
            return "Jensen–Shannon divergence of expert load: the records have no layers"
        lines = [f"Jensen–Shannon divergence of expert load per layer (bits): mean {self.jsd.mean():.3f}, "
                 f"max {self.jsd.max():.3f} at layer {int(self.jsd.argmax())}"]
        lines += [f"  layer {layer:>2} expert {expert:>3}: {a:6.1%} vs {b:6.1%}" for layer, expert, a, b in self.top]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The text in a box that keeps its columns and scrolls sideways: shown as plain text, a narrow notebook
        wrapped each row of the table in two."""
        return f'<pre style="white-space: pre; overflow-x: auto">{html.escape(repr(self))}</pre>'


# ---------------------------------------------------------------- helpers


# Counting code works on "bins": an expert id plus one, so that an empty slot (-1) falls in bin 0,
# which is dropped at the end; `num_experts + 1` bins per layer.


def _picks(routing: Routing, layer: int) -> np.ndarray:
    """int64 [tokens, k] bins (expert id + 1) of one layer."""
    return np.add(routing.experts[:, layer], 1, dtype=np.int64)


def _blocks(routing: Routing, size: int = _CHUNK, per_layer: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(start, int64 [tokens, layers, k] bins) for blocks of contiguous tokens: one pass over the
    record in memory order (cast and shift fused), whatever its size. `per_layer=True` numbers the
    bins of layer l from l × (num_experts + 1), so one bincount counts every layer at once."""
    layers, k = routing.layers, routing.top_k
    shift = np.ones(layers * k, np.int64)
    if per_layer:
        shift += np.repeat(np.arange(layers) * (routing.num_experts + 1), k)
    for start in range(0, len(routing), size):
        block = np.asarray(routing.experts[start:start + size])
        yield start, np.add(block.reshape(len(block), -1), shift, dtype=np.int64).reshape(block.shape)


def _step(pairs: int, tokens: int = _CHUNK) -> int:
    """Tokens per step for temporaries of `pairs` entries per token and layer (k × k'): `tokens` up to top-4,
    fewer past it, so memory stays bounded for any top-k (a top-32 intervention's record took gigabytes)."""
    return max(1, tokens * 16 // max(pairs, 16))


def _counts(keys: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(keys.ravel(), minlength=size)[:size]


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


def _entropy(share: np.ndarray) -> np.ndarray:
    logs = np.log2(share, out=np.zeros(share.shape), where=share > 0)
    return 0.0 - (share * logs).sum(axis=-1)   # not -(...): one expert's layer printed as "-0."


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (bits, 0..1) of distributions along the last axis."""
    return np.maximum(_entropy((p + q) / 2) - (_entropy(p) + _entropy(q)) / 2, 0.0)


def _token_index(routing: Routing) -> tuple[np.ndarray, np.ndarray]:
    """(distinct token ids, each position's index among them)."""
    ids, inverse = np.unique(np.asarray(routing.tokens), return_inverse=True)
    return ids, inverse.astype(np.int64)


def whole(value: Any, name: str) -> int:
    """`value` as an int: a one-line TypeError for a bool, a float or text (2.7 must not mean 2, nor True 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def at_least(value: Any, name: str, least: int, what: str) -> int:
    """`value` as a whole number of at least `least`, else one line naming the argument, what it counts and what it may
    be: the one rule of the analyses' counts (token_concentration(min_count=-1) gave a table as if every token had
    been seen often enough)."""
    if whole(value, name) < least:
        raise ValueError(f"{name} ({what}) must be at least {least}, not {value}")
    return int(value)


def fits_in_memory(nbytes: int, what: str) -> None:
    """Refuse (a one-line MemoryError) to build `what`, `nbytes` large, when the memory free cannot hold it: a large
    or hand-made record's float32 weights or table failed deep in numpy, or had the system kill the kernel."""
    import psutil

    free = psutil.virtual_memory().available
    if nbytes > free * 0.9:
        raise MemoryError(f"{what} would take {nbytes / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB of memory "
                          "free: look at a part of the record, routing.select(slice(0, n))")


def flag(value: Any, name: str) -> bool:
    """`value` as a bool: a one-line TypeError for anything else ("no" was True, None False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def _records(count: int) -> Callable[[_F], _F]:
    """An analysis whose first `count` arguments must be Routings, refused otherwise in one TypeError: a Corpus
    failed deep inside ("'Corpus' object has no attribute 'layers'"), and given to agreement it said the
    tokens differ."""
    def wrap(function: _F) -> _F:
        names = function.__code__.co_varnames[:count]

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            from .record import Routing

            for value in (*args[:count], *(kwargs[name] for name in names[len(args):] if name in kwargs)):
                if not isinstance(value, Routing):
                    raise TypeError(_not_a_record(function.__name__, value, count))
            return function(*args, **kwargs)
        return checked  # type: ignore[return-value]
    return wrap


def _not_a_record(name: str, value: Any, count: int) -> str:
    """The one line saying that `name` takes Routings, what was given instead and how to get one from it."""
    from .corpus import Corpus

    if isinstance(value, Corpus):
        hint = ": pass corpus.combined (all its texts as one record) or corpus[i] (text i)"
    elif isinstance(value, (list, tuple)):
        hint = ": give the records one at a time"
    elif name == "load" and isinstance(value, (str, os.PathLike)):   # Routing.load(path) read as the load analysis
        hint = ": to read a saved record, gptoss_lab.routing.load(path) (Corpus.load(path) keeps its texts apart)"
    else:
        hint = ""
    return f"{name} takes {'two Routing records' if count == 2 else 'a Routing record'}, not {described(value)}{hint}"


def described(value: Any) -> str:
    """What a user gave, in a few words for a one-line error: a short repr of plain data, else its type."""
    plain = (Number, str, bytes, np.generic)
    if value is None:
        return "None"
    if isinstance(value, plain) or (isinstance(value, (list, tuple)) and all(isinstance(v, plain) for v in value)):
        return f"{reprlib.repr(value)} ({type(value).__name__})"
    return f"a {type(value).__name__}"


def numbered(count: int, noun: str, from_end: bool = False) -> str:
    """`count` things numbered from 0, in words for a message: "layers 0..3 (-1 = the last)", or "no layers" (an
    empty record's said "layers 0..-1")."""
    if not count:
        return f"no {noun}s"
    return f"{noun}s 0..{count - 1}" + " (-1 = the last)" * from_end


def layer_index(layer: Any, layers: int, owner: str = "this record") -> int:
    """The layer `layer` names among `layers`, a negative one counted from the last as in Python and --ablate -1:3;
    refused in one line when `owner` does not have it. Every `layer=` of the routing lab reads layers so."""
    if not -layers <= whole(layer, "layer") < layers:
        raise ValueError(f"{owner} has {numbered(layers, 'layer', True)}: there is no layer {layer}")
    return int(layer) % layers


def expert_ids(experts: Any) -> np.ndarray:
    """`experts` (a list of expert ids) as int64, refused in one TypeError otherwise: one id (`plot(experts=3)`) was
    "'int' object is not iterable"."""
    ids = np.asarray(experts)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise TypeError(f"experts must be a list of expert ids, not {experts!r}")
    return ids.astype(np.int64)  # [] is float64: numpy's "arrays used as indices must be of integer type"


def _subset(routing: Routing, experts: Sequence[int] | None, tables: int,
            what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(the expert ids counted, the bin of each expert id + 1 among them, 0 = not counted; None for all experts).
    `tables` experts × experts tables past `_CELLS` counts are refused in one line: 32,768 experts made 8 GiB."""
    if experts is None:
        ids = np.arange(routing.num_experts)
    else:
        ids = expert_ids(experts)
        if ids.size and not routing.num_experts:
            raise ValueError(f"this record has no experts: there is no expert {int(ids[0])}")
        if ids.size and (ids.min() < 0 or ids.max() >= routing.num_experts or len(np.unique(ids)) < len(ids)):
            raise ValueError(f"experts must be distinct ids from 0 to {routing.num_experts - 1}, not {ids.tolist()}")
    m = len(ids)
    if tables * m * m > _CELLS:
        shape = f"{tables} × {m} × {m}" if tables > 1 else f"{m} × {m}"
        raise ValueError(f"{what} of {m} experts would be {shape} counts ({tables * m * m * 8 / 2**30:.1f} GiB): "
                         f"pass experts=[...] to count a subset, e.g. np.argsort(-routing.load().counts.sum(0))[:100]")
    if experts is None:
        return ids, None
    bins = np.zeros(routing.num_experts + 1, np.int64)
    bins[ids + 1] = np.arange(1, m + 1)
    return ids, bins


def _texts(ids: np.ndarray) -> list[str]:
    from .record import token_texts

    return token_texts(ids)


def _label_codes(routing: Routing, labels: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """(code per token, label names) from the routing's own labels or a per-token sequence given."""
    if labels is None:
        return routing.label_codes, routing.label_names
    if isinstance(labels, str):  # one label per character, then "Categorical input must be list-like"
        raise TypeError("labels is a list of one label per token, not one text: labels=[label] * len(routing)")
    if len(labels) != len(routing):  # a Categorical too: extra labels were ignored, too few an IndexError
        raise ValueError(f"{counted(len(labels), 'label')} for {counted(len(routing), 'token')}: "
                         "give one label per token")
    if isinstance(labels, pd.Categorical):
        return np.asarray(labels.codes, np.int64), [label_text(str(c)) for c in labels.categories]
    if np.ndim(labels) != 1:  # pandas' "> 1 ndim Categorical are not supported", or "must be list-like" for a dict
        raise TypeError(f"labels is a list of one label per token, not {described(labels)}")
    categorical = pd.Categorical(label_texts(labels))
    return np.asarray(categorical.codes, np.int64), list(categorical.categories)


def label_text(label: str) -> str:
    """A label as a record keeps it, the one rule for every way labels come in (a record's, `route`'s, a table's):
    at most `MAX_LABEL` characters, refused in one line, and a lone surrogate (an undecodable file name) written out,
    which failed every display. A label "" means no label (a record's "not known yet"), as None does: the label
    analyses leave its tokens out (`_present`)."""
    from ..harmony import clean

    if len(label) > MAX_LABEL:  # route(..., labels=) took a million characters a record's labels could not hold
        raise ValueError(f"a label is a name of at most {MAX_LABEL} characters (a channel, a category), "
                         f"not one of {len(label):,}")
    return clean(label)


def label_texts(labels: Iterable[Any]) -> list[str | None]:
    """Labels as texts (`label_text`; a numpy integer failed meta.json), None where one is missing (None, NaN, pandas'
    NA, "": a text's "" was a label of its own, a record's "" none): a table's empty cell was a label "nan", and 1
    and "1" two labels both named "1"."""
    return [None if _missing(label) else label_text(str(label)) or None for label in labels]


def _missing(label: Any) -> bool:
    return label is None or label is pd.NA or label is pd.NaT or isinstance(label, (float, np.floating)) and label != label


def _present(codes: np.ndarray, names: list[str]) -> list[int]:
    """Label codes that occur, in order of first appearance, but for the label "" (no label, see `label_text`): it was
    a row with a blank name in `label_load`, `channel_load` and an expert card."""
    seen = np.unique(codes[codes >= 0], return_index=True)
    return [int(c) for c in seen[0][np.argsort(seen[1])] if names[c] != ""]


# ---------------------------------------------------------------- load, co-activation, entropy, compare


@_records(1)
def load(routing: Routing, channel: str | None = None) -> Load:
    """Per-layer expert load over all tokens, or over the tokens of one label (Harmony channel)."""
    mask = None if channel is None else routing.mask(channel)
    size = routing.num_experts + 1
    counts = np.zeros(routing.layers * size, np.int64)
    for start, block in _blocks(routing, per_layer=True):
        if mask is not None:
            block = block[mask[start:start + len(block)]]
        counts += _counts(block, routing.layers * size)
    counts = counts.reshape(routing.layers, size)[:, 1:]
    return Load(counts, _normalise(counts))


@_records(1)
def channel_load(routing: Routing) -> dict[str, Load]:
    """Expert load of each label present (analysis vs final vs tool ...), in order of appearance."""
    names = routing.label_names
    return {names[code]: load(routing, names[code]) for code in _present(routing.label_codes, names)}


@_records(1)
def coactivation(routing: Routing, layer: int | None = None, experts: Sequence[int] | None = None) -> np.ndarray:
    """[experts, experts] counts of tokens that chose both experts together (one layer, or all
    layers summed); the diagonal counts how often each expert was chosen. `experts` (ids) counts
    among those only, rows and columns in their order: needed past 4,096 experts."""
    if layer is not None:
        layer = layer_index(layer, routing.layers)
    ids, bins = _subset(routing, experts, 1, "co-activation")
    size = len(ids) + 1
    first, second = np.triu_indices(routing.top_k, 1)  # each pair of a token's picks once (they are distinct)
    pairs = np.zeros(size * size, np.int64)
    single = np.zeros(size, np.int64)
    for _, block in _blocks(routing, _step(routing.top_k ** 2, _CHUNK // 2)):
        picks = block if layer is None else block[:, layer: layer + 1]
        picks = picks if bins is None else bins[picks]
        pairs += _counts(picks[..., first] * size + picks[..., second], size * size)
        single += _counts(picks, size)
    upper = pairs.reshape(size, size)[1:, 1:]
    table = upper + upper.T
    table[np.diag_indices(len(ids))] += single[1:]
    return table


@_records(1)
def entropy(routing: Routing) -> np.ndarray:
    """Entropy (bits) of each layer's expert load: log2(experts) is perfectly balanced, 0 one expert, NaN a layer
    without picks (no tokens: its 0 said "one expert takes every pick", and pulled a mean over records down)."""
    counted = load(routing)
    return np.where(counted.counts.any(axis=1), _entropy(counted.share), np.nan)


@_records(2)
def compare(a: Routing, b: Routing, top: int = 10) -> Comparison:
    """Contrast two routings' expert usage layer by layer (e.g. two prompts on the same model)."""
    experts = _same_model(a, b, "compare")
    top = at_least(top, "top", 0, "the entries that differ most")  # -1 dropped the last entry, as a slice does
    loads = load(a), load(b)
    for which, loaded in zip(("first", "second"), loads):   # no picks: a share of 0 everywhere read as 0.5 bits apart
        if a.layers and not loaded.counts.any():   # (no layers: the comparison says so)
            raise ValueError(f"compare: the {which} routing has no expert picks (no tokens, or top-0): nothing to "
                             "compare")
    p, q = (np.pad(loaded.share, ((0, 0), (0, experts - loaded.share.shape[1]))) for loaded in loads)
    diff = np.abs(p - q).ravel()
    order = np.argsort(-diff, kind="stable")[:top]
    pairs = [divmod(int(i), experts) for i in order if diff[i] > 0]
    return Comparison(_jsd(p, q), [(layer, e, float(p[layer, e]), float(q[layer, e])) for layer, e in pairs])


def _same_model(a: Routing, b: Routing, name: str) -> int:
    """The experts per layer of the model two records may both be of, refused in one line naming the analysis `name`
    where their layers or expert counts differ. A count inferred from the ids seen (no num_experts given) may be the
    other's: compare refused two hand-made records of one model, one of which never saw the last expert."""
    given = [r._num_experts for r in (a, b) if r._num_experts is not None]  # else inferred from the ids seen
    differ = [f"layers ({a.layers} and {b.layers})"] if a.layers != b.layers else []
    if len(set(given)) > 1 or (given and max(a.num_experts, b.num_experts) > given[0]):
        differ.append(f"experts ({a.num_experts} and {b.num_experts})")
    if differ:  # the ids of another model's experts name other experts: equal ids are no agreement
        raise ValueError(f"the records differ in {' and '.join(differ)}: {name} compares two routings "
                         f"of the same model")
    return max(a.num_experts, b.num_experts)


_FRAME_ROW_BYTES = 64   # the columns' 31 bytes a row, and what building them holds at once


@_records(1)
def to_frame(routing: Routing) -> Frame:
    """A tidy table, one row per expert pick: (token, layer, rank) with its expert and gate weight. A slot left empty
    (`disable(..., replace=False)`: expert -1, weight 0) is no pick and has no row, as the text views count none
    (grouping by expert counted an "expert -1"). A token's text and label repeat on each of its rows: they are
    categoricals (as text they took ~120 bytes a row); layers and ranks are int32, positions int64 (arithmetic on
    them must not wrap)."""
    n, layers, k = routing.experts.shape
    fits_in_memory(n * layers * k * _FRAME_ROW_BYTES, f"a table of {n * layers * k:,} rows")
    columns = {
        "position": np.repeat(np.arange(n), layers * k),
        "token": np.repeat(routing.tokens, layers * k),
        "text": _repeated(routing.strings, layers * k),
        "label": _repeated(routing.labels, layers * k),
        "layer": np.tile(np.repeat(np.arange(layers, dtype=np.int32), k), n),
        "rank": np.tile(np.arange(k, dtype=np.int32), n * layers),
        "expert": np.asarray(routing.experts).ravel(),
        "weight": routing.weights.ravel(),
    }
    picked = columns["expert"] >= 0
    return Frame(columns if picked.all() else {name: column[picked] for name, column in columns.items()})


def _repeated(values: Sequence[str], times: int) -> pd.Categorical:
    """Each of `values` `times` times in a row, as a categorical of the values present (sorted: a frame sorted by
    the column reads as sorted text)."""
    present = pd.Categorical(values)
    return pd.Categorical.from_codes(np.repeat(present.codes, times), present.categories)


# ---------------------------------------------------------------- vocabulary specialisation


def _pairs(first: np.ndarray, second: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, count) of each distinct pair that occurs (`second` < `size`), in order: memory grows with
    the pairs seen, not with a first × second table (32,768 experts × a corpus's token ids were gigabytes a layer)."""
    keys, counts = np.unique(first * size + second, return_counts=True)
    return keys // size, keys % size, counts


def _ranks(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the order that sorts entries by group, then by score from high to low, ties kept in order; the rank of each
    entry so ordered within its group)."""
    order = np.lexsort((-scores, groups))
    ordered = groups[order]
    return order, np.arange(len(order)) - np.searchsorted(ordered, ordered)


@_records(1)
def top_tokens(routing: Routing, n: int = 10, *, layer: int | None = None, by: str = "count",
               min_count: int = 1) -> Table:
    """For each expert (of one layer, or of every layer), the `n` token ids it is chosen for most.

    `count`: how many times the expert was among that token's top-k picks; `specialisation`: the
    share of the token's occurrences that went to this expert (1.0 = every time). `by="specialisation"`
    ranks by that instead, among tokens seen at least `min_count` times (OLMoE's vocabulary
    specialisation). `.plot(layer=..., experts=...)` draws bar charts of the top tokens
    of one layer (by default the first counted).
    """
    if by not in ("count", "specialisation"):
        raise ValueError(f"by must be 'count' or 'specialisation', not {by!r}")
    n = at_least(n, "n", 1, "tokens per expert")
    min_count = at_least(min_count, "min_count", 1, "the times a token is seen")  # "2" was a numpy UFuncTypeError
    if layer is not None:
        layer = layer_index(layer, routing.layers)
    ids, index = _token_index(routing)
    occurrences = np.bincount(index, minlength=len(ids))
    parts = []
    for l in range(routing.layers) if layer is None else [layer]:
        picks = _picks(routing, l)
        chosen = picks > 0  # not an empty slot
        tokens = np.broadcast_to(index[:, None], picks.shape)[chosen]
        expert, token, counts = _pairs(picks[chosen] - 1, tokens, len(ids))
        seen = occurrences[token] >= min_count
        expert, token, counts = expert[seen], token[seen], counts[seen]
        spec = counts / occurrences[token]
        order, rank = _ranks(expert, spec if by == "specialisation" else counts)  # ties: lower token id first
        order, rank = order[rank < n], rank[rank < n]
        if len(order):
            parts.append(pd.DataFrame({"layer": l, "expert": expert[order], "rank": rank, "token": ids[token[order]],
                                       "count": counts[order], "specialisation": spec[order]}))
    columns = ["layer", "expert", "rank", "token", "count", "specialisation"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    frame.insert(4, "text", _texts(frame["token"].to_numpy()) if len(frame) else [])
    layers = list(range(routing.layers)) if layer is None else [layer]
    return result_table(frame, "top_tokens", layer=layers[0] if layers else None, layers=layers,
                        num_experts=routing.num_experts, record_layers=routing.layers, by=by)


@_records(1)
def token_concentration(routing: Routing, min_count: int = 5) -> Table:
    """How much each token id's routing is fixed by the id itself rather than by its context.

    Per token id seen at least `min_count` times and per layer: the share of its top-k picks that go
    to its k most frequent experts there (k: the picks a token has in that layer, fewer under a top-k
    intervention). 1.0 = the token always goes to the same experts (token-id routing); near
    k/experts = its experts change with the context. Columns: text, count, the
    per-layer values and their mean. `.plot()` draws the count-weighted mean per layer against
    those two bounds.
    """
    ids, index = _token_index(routing)
    occurrences = np.bincount(index, minlength=len(ids))
    keep = np.flatnonzero(occurrences >= at_least(min_count, "min_count", 1, "the times a token is seen"))
    remap = np.full(len(ids), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    rows = remap[index]
    chosen = rows >= 0
    size = routing.num_experts + 1
    table = np.zeros((len(keep), routing.layers))
    # each layer's k, the picks a token has there: a top-1 layer of a top-2 record counted each token's two most
    # frequent experts, and a token sent to a different one each time read as 1.0 (always the same experts)
    k = [int((np.asarray(routing.experts[:, l]) >= 0).sum(1).max(initial=0)) for l in range(routing.layers)]
    for l in range(routing.layers):
        picks = _picks(routing, l)[chosen]
        valid = picks > 0  # not an empty slot
        row, _, counts = _pairs(np.broadcast_to(rows[chosen][:, None], picks.shape)[valid], picks[valid], size)
        order, rank = _ranks(row, counts)
        top = order[rank < k[l]]  # each token id's k most frequent experts
        table[:, l] = (np.bincount(row[top], counts[top], len(keep))
                       / np.maximum(np.bincount(row, counts, len(keep)), 1))
    frame = pd.DataFrame(table, index=pd.Index(ids[keep], name="token"),
                         columns=[f"layer {l}" for l in range(routing.layers)])
    frame.insert(0, "count", occurrences[keep])
    frame.insert(0, "text", _texts(ids[keep]))
    frame["mean"] = table.mean(1) if routing.layers else 0.0
    frame = frame.sort_values(["mean", "count"], ascending=False)
    return result_table(frame, "token_concentration", top_k=k, num_experts=routing.num_experts)


# ---------------------------------------------------------------- label specialisation


def _label_counts(routing: Routing, codes: np.ndarray, present: list[int]) -> np.ndarray:
    """int64 [labels, layers, experts] top-k pick counts per label."""
    size, layers = routing.num_experts + 1, routing.layers
    position = np.full(int(codes.max(initial=0)) + 1, -1, np.int64)
    position[present] = np.arange(len(present))
    row = position[np.maximum(codes, 0)]
    row[codes < 0] = -1
    total = np.zeros(len(present) * layers * size, np.int64)
    for start, block in _blocks(routing, per_layer=True):
        rows = row[start:start + len(block)]
        valid = rows >= 0
        total += _counts(rows[valid][:, None, None] * (layers * size) + block[valid], len(total))
    return total.reshape(len(present), layers, size)[..., 1:]


@_records(1)
def label_load(routing: Routing, labels: Sequence[str] | None = None) -> Table:
    """Expert load per label and layer: rows (label, layer), columns experts, values the share of
    that label's top-k picks in that layer. Labels are the routing's own (Harmony channels) or one
    per token given here (e.g. "code", "prose", "math"); a token labelled None, NaN or "" (a record's "not
    known yet") is left out, as a corpus's texts without a label are. `.plot()` draws the specialisation heat map: per label (the 16
    with most tokens), how much more (or less) each expert is used than over all tokens."""
    codes, names = _label_codes(routing, labels)
    present = _present(codes, names)
    counts = _label_counts(routing, codes, present)
    share = _normalise(counts)
    index = pd.MultiIndex.from_product([[names[c] for c in present], range(routing.layers)], names=["label", "layer"])
    frame = pd.DataFrame(share.reshape(len(present) * routing.layers, routing.num_experts), index=index,
                         columns=pd.RangeIndex(routing.num_experts, name="expert"))  # -1 failed for 0 experts
    table = result_table(frame, "label_load", overall=_normalise(counts.sum(0)).tolist())
    tokens = np.bincount(codes[codes >= 0], minlength=len(names))  # one pass: a pass per label took labels × tokens
    table.attrs["tokens"] = {names[c]: int(tokens[c]) for c in present}
    return table


@_records(1)
def label_divergence(routing: Routing, labels: Sequence[str] | None = None) -> Table:
    """Per layer, how differently the labels are routed (bits): `jsd` is the generalised
    Jensen–Shannon divergence of the labels' expert loads, weighted by their token counts (the
    mutual information between label and expert, per pick); where there are two labels or more, one
    column per label gives that label's Jensen–Shannon divergence against the tokens of the other
    labels (0 = routed like the rest, 1 = disjoint). NaN where a layer has no picks (no tokens: its 0 said "routed
    alike")."""
    codes, names = _label_codes(routing, labels)
    present = _present(codes, names)
    counts = _label_counts(routing, codes, present).astype(float)
    totals = counts.sum(-1)  # [labels, layers]
    weight = np.divide(totals, totals.sum(0), out=np.zeros_like(totals), where=totals.sum(0) > 0)
    overall = counts.sum(0)
    jsd = _entropy(_normalise(overall)) - (weight * _entropy(_normalise(counts))).sum(0)
    columns = {"jsd": np.where(overall.any(-1), np.maximum(jsd, 0.0), np.nan)}
    if len(present) > 1:  # a single label has no rest; all at once: summing the rest per label took labels² time
        rest = _jsd(_normalise(counts), _normalise(overall - counts))  # [labels, layers]
        columns.update({f"{names[code]} vs rest": rest[i] for i, code in enumerate(present)})
    return result_table(pd.DataFrame(columns, index=pd.RangeIndex(routing.layers, name="layer")), "label_divergence")


# ---------------------------------------------------------------- transitions, hot and cold experts


@_records(1)
def transitions(routing: Routing, layer: int | None = None, *, top1: bool = True, normalize: bool = False,
                experts: Sequence[int] | None = None) -> Table:
    """How often expert i in layer l is followed by expert j in layer l+1 (rows i, columns j).

    `top1=True` follows each token's top-1 expert; `top1=False` counts every pair of its top-k picks
    in the two layers. One layer gives an experts × experts table, `layer=None` every layer's (rows
    indexed by (layer, expert)). `normalize=True` turns counts into P(next | expert). `experts` (ids)
    counts among those only (needed for models with thousands of experts). `.plot()` draws the table's layers, one
    panel each; `.plot(layer=l)` one of them (-1 = the record's last layer, which no layer follows)."""
    top1, normalize = flag(top1, "top1"), flag(normalize, "normalize")
    if routing.layers < 2:
        raise ValueError("transitions need at least two layers")
    last = routing.layers - 2
    if layer is not None:
        given, layer = layer, layer_index(layer, routing.layers)   # -1 was "between 0 and {last}, not -1"
        if layer > last:
            raise followed_by_none(given, routing.layers)
    ids, bins = _subset(routing, experts, last + 1 if layer is None else 1, "transitions")
    size = len(ids) + 1
    first, last = (0, routing.layers - 1) if layer is None else (layer, layer + 1)
    offset = np.arange(last - first)[None, :, None, None] * size * size
    total = np.zeros((last - first) * size * size, np.int64)
    for _, block in _blocks(routing, _step(1 if top1 else routing.top_k ** 2, _CHUNK // 4)):
        block = block if bins is None else bins[block]
        here, there = block[:, first:last], block[:, first + 1:last + 1]
        if top1:
            here, there = here[..., :1], there[..., :1]
        total += _counts(offset + here[..., :, None] * size + there[..., None, :], len(total))
    counts = total.reshape(last - first, size, size)[:, 1:, 1:]
    blocks = [_normalise(c) if normalize else c for c in counts]
    rows = pd.Index(ids, name="expert")
    columns = pd.Index(ids, name="next expert")
    measure = "P(next expert | expert)" if normalize else "tokens" if top1 else "pairs of top-k picks"
    if layer is not None:
        return result_table(blocks[0], "transitions", index=rows, columns=columns, layer=layer, measure=measure,
                            record_layers=routing.layers)
    index = pd.MultiIndex.from_product([range(routing.layers - 1), ids], names=["layer", "expert"])
    return result_table(np.concatenate(blocks), "transitions", index=index, columns=columns, layer=None,
                        measure=measure, record_layers=routing.layers)


def followed_by_none(layer: int, layers: int) -> ValueError:
    """The one-line refusal of transitions from `layer`, the last of `layers`: the analysis's and its figure's."""
    return ValueError(f"layer {layer} is the last, which no layer follows: transitions go from layers 0..{layers - 2} "
                      "(-2 = the last of them)")


@_records(1)
def hot_and_cold(routing: Routing, top: int | None = None) -> Table:
    """Per layer: the busiest and the least used expert with their shares of the top-k picks, how
    many experts were never chosen, the share the `top` busiest experts take (default: a tenth of
    the experts, at least one) and the balance (load entropy / log2 experts; 1 = perfectly even).
    `.plot()` draws each layer's cumulative share over its experts, busiest first."""
    if top is not None:
        top = at_least(top, "top", 1, "the busiest experts summed")
    if not routing.num_experts:
        raise ValueError("this record has no experts (num_experts is 0): none is hot or cold")
    if top is not None and top > routing.num_experts:  # a "top100_share" of 1.0 among 8 experts
        raise ValueError(f"top (the busiest experts summed) must be at most the record's {routing.num_experts} "
                         f"experts, not {top}")
    loaded = load(routing)
    if not loaded.counts.any():  # every share 0 named expert 0 both the hottest and the coldest, balance 0
        raise ValueError("this record has no expert picks (no tokens, or top-0): none is hot or cold")
    share = loaded.share
    top = top or max(1, routing.num_experts // 10)
    ranked = -np.sort(-share, axis=1)
    balance = entropy(routing) / np.log2(routing.num_experts) if routing.num_experts > 1 else np.ones(routing.layers)
    frame = pd.DataFrame({
        "hot": share.argmax(1), "hot_share": share.max(1),
        "cold": share.argmin(1), "cold_share": share.min(1),
        "unused": (share == 0).sum(1),
        f"top{top}_share": ranked[:, :top].sum(1),
        "balance": balance,
    }, index=pd.RangeIndex(routing.layers, name="layer"))
    return result_table(frame, "hot_and_cold", cumulative=np.cumsum(ranked, axis=1).tolist(), top=top)


# ---------------------------------------------------------------- agreement between two records


class _Overlap(NamedTuple):
    """Per token and layer of a chunk of two records: a's experts also among b's, each one's number of
    experts (empty slots not counted), and whether the top-1 experts agree."""

    start: int
    shared: np.ndarray
    mine: np.ndarray
    theirs: np.ndarray
    top1: np.ndarray

    @property
    def same_set(self) -> np.ndarray:
        return (self.shared == self.mine) & (self.mine == self.theirs)


def _overlaps(a: Routing, b: Routing, name: str) -> Iterator[_Overlap]:
    """The `_Overlap` of each chunk of tokens of two records of the same tokens; refusals name the analysis `name`
    (route_changes' said "agreement needs ...")."""
    if len(a) != len(b) or not np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens)):
        raise ValueError(f"{name} needs two records of the same tokens (route the same texts or ids twice)")
    _same_model(a, b, name)
    step = _step(a.top_k * b.top_k)
    for start in range(0, len(a), step):
        x, y = np.asarray(a.experts[start:start + step]), np.asarray(b.experts[start:start + step])
        equal = (x[..., :, None] == y[..., None, :]) & (x[..., :, None] >= 0)
        yield _Overlap(start, equal.any(-1).sum(-1), (x >= 0).sum(-1), (y >= 0).sum(-1), _top1(x) == _top1(y))


def _top1(experts: np.ndarray) -> np.ndarray:
    """[tokens, layers] top-1 experts, -1 (an empty slot) for a top-0 record (whose slot 0 was an IndexError)."""
    return experts[..., 0] if experts.shape[-1] else np.full(experts.shape[:-1], -1, experts.dtype)


@_records(2)
def agreement(a: Routing, b: Routing) -> Table:
    """Per layer, how alike two records of the same tokens are routed (two checkpoints, bf16 vs MXFP4, with and
    without an intervention: the same texts `route`d; two efforts' turns differ in their tokens): `overlap` is the
    mean share of a's top-k experts also in b's top-k (router saturation; 1 where both have none), `top1` the share
    of tokens with the same top-1 expert, `same_set` the share with identical top-k sets (empty slots are no
    experts)."""
    if len(a) == len(b) == 0:  # every share was 0.0: two empty records (an empty text's) read as fully different
        raise ValueError("these records have no tokens (an empty text routes none): there is no agreement to measure")
    shared = np.zeros(a.layers)
    top1 = np.zeros(a.layers)
    same = np.zeros(a.layers)
    for part in _overlaps(a, b, "agreement"):
        none_and_none = part.theirs == 0  # a token with no experts in either agrees fully
        shared += np.where(part.mine > 0, part.shared / np.maximum(part.mine, 1), none_and_none).sum(0)
        top1 += part.top1.sum(0)
        same += part.same_set.sum(0)
    n = len(a)
    frame = pd.DataFrame({"overlap": shared / n, "top1": top1 / n, "same_set": same / n},
                         index=pd.RangeIndex(a.layers, name="layer"))
    return result_table(frame, "agreement")


@_records(2)
def route_changes(a: Routing, b: Routing) -> Table:
    """Per token of two records of the same tokens: in how many layers its top-k set and its top-1
    expert differ, with the token's text and label; `.plot()` marks the changed cells."""
    changed = np.zeros(len(a), np.int64)
    first_changed = np.zeros(len(a), np.int64)
    cells = np.zeros((len(a), a.layers), bool)
    for part in _overlaps(a, b, "route_changes"):
        moved = ~part.same_set
        rows = slice(part.start, part.start + len(moved))
        cells[rows] = moved
        changed[rows] = moved.sum(1)
        first_changed[rows] = (~part.top1).sum(1)
    frame = pd.DataFrame({"token": np.asarray(a.tokens), "text": a.strings, "label": a.labels,
                          "layers_changed": changed, "top1_changed": first_changed},
                         index=pd.RangeIndex(len(a), name="position"))
    return result_table(frame, "route_changes", cells=cells)


# ---------------------------------------------------------------- one expert


@dataclass
class ExpertCard:
    """What one expert of one layer does in a record: its share of the layer's picks, the tokens it
    is chosen for, its load per label, and where its tokens come from and go to in the next layers."""

    layer: int
    expert: int
    picks: int
    share: float
    overall: float                         # share of all tokens that chose it (what `lift` compares with)
    tokens: Frame = field(repr=False)      # token, text, count, specialisation
    labels: Frame = field(repr=False)      # label, tokens, chose (share of the label's tokens), lift
    previous: Frame = field(repr=False)    # expert of layer-1 (top-1), share of this expert's tokens
    next: Frame = field(repr=False)        # expert of layer+1 (top-1), share

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the routing widget draws its card from this)."""
        return {"layer": self.layer, "expert": self.expert, "picks": self.picks, "share": self.share,
                "overall": self.overall, "tokens": self.tokens.to_dict("records"), "labels": self.labels.to_dict("records"),
                "previous": self.previous.to_dict("records"), "next": self.next.to_dict("records")}

    def plot(self) -> Any:
        """The card as a matplotlib Figure (top tokens, load by label, transitions)."""
        from ..widgets.routing_figures import draw

        return draw("expert_card", self)

    def _repr_html_(self) -> str:
        from ..widgets.routing_figures import card_html

        return card_html(self)

    def __repr__(self) -> str:
        tokens = ", ".join(f"{t!r}×{c}" for t, c in zip(self.tokens["text"], self.tokens["count"]))
        return (f"ExpertCard(layer {self.layer}, expert {self.expert}: {counted(self.picks, 'pick')}, "
                f"{self.share:.1%} of the layer; "
                f"top tokens {tokens or '-'})")


@_records(1)
def expert_card(routing: Routing, layer: int, expert: int, n: int = 8) -> ExpertCard:
    """The `ExpertCard` of `expert` in `layer`: top `n` tokens, load by label, transitions."""
    if not -routing.layers <= whole(layer, "layer") < routing.layers or not 0 <= whole(expert, "expert") < routing.num_experts:
        raise ValueError(f"no expert {expert} in layer {layer}: this record has "
                         f"{numbered(routing.layers, 'layer', True)} and {numbered(routing.num_experts, 'expert')}")
    layer = layer_index(layer, routing.layers)
    n = at_least(n, "n", 1, "top tokens and neighbours shown")  # -1 dropped the last token and neighbour
    picks = np.asarray(routing.experts[:, layer])
    chosen = picks == expert
    hit = chosen.any(1)
    tokens = np.asarray(routing.tokens)
    ids, counts = np.unique(tokens[hit], return_counts=True)
    occurrences = np.unique(tokens, return_counts=True)
    seen = dict(zip(occurrences[0].tolist(), occurrences[1].tolist()))
    order = np.argsort(-counts, kind="stable")[:n]
    top = Frame({"token": ids[order].astype(int), "text": _texts(ids[order]), "count": counts[order],
                        "specialisation": [c / seen[int(t)] for t, c in zip(ids[order], counts[order])]})
    codes, names = routing.label_codes, routing.label_names
    overall = hit.mean() if len(hit) else 0.0
    in_label = np.bincount(codes, minlength=len(names))  # one pass for all labels, not one per label
    chose = np.bincount(codes, hit, len(names)) / np.maximum(in_label, 1)
    rows = [(names[c], int(in_label[c]), float(chose[c]), float(chose[c] / overall) if overall else 0.0)
            for c in _present(codes, names)]
    labels = Frame(rows, columns=["label", "tokens", "chose", "lift"])
    valid = int((picks >= 0).sum())  # this layer's picks: the whole record's load was a scan of every layer per card
    share = int(chosen.sum()) / valid if valid else 0.0
    return ExpertCard(layer, expert, int(hit.sum()), share, float(overall), top, labels,
                      _neighbours(routing, hit, layer - 1, n), _neighbours(routing, hit, layer + 1, n))


def _neighbours(routing: Routing, hit: np.ndarray, layer: int, n: int) -> Frame:
    """Top-1 experts of `layer` among the tokens in `hit`, with their shares (empty outside the model)."""
    if not 0 <= layer < routing.layers or not hit.any():
        return Frame({"expert": pd.Series(dtype=int), "share": pd.Series(dtype=float)})
    first = np.asarray(routing.experts[:, layer, 0])[hit].astype(np.int64)
    first = first[first >= 0]
    counts = np.bincount(first, minlength=routing.num_experts)
    order = np.argsort(-counts, kind="stable")[:n]
    order = order[counts[order] > 0]
    return Frame({"expert": order.astype(int), "share": counts[order] / max(len(first), 1)})
