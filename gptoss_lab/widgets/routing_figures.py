"""Static pictures of routing (matplotlib): for papers, nbconvert, and saved notebooks.

`routing_figure` draws a record's grid or load, `view_figure` the still image a RoutingView leaves in
a saved notebook, and `draw(kind, result)` the figure of each analysis (what `Table.plot()` calls).
Figures are `matplotlib.figure.Figure`s made without pyplot, so nothing depends on a backend.
"""
from __future__ import annotations

import html
import io
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import counted
from ..routing.analysis import expert_ids, followed_by_none, layer_index, numbered
from .sanitize import NO_TYPESETTING, one_html_block, shown_text

_MAX_COLUMNS = 4000  # tokens drawn at most in a grid image; longer records are sampled evenly
_MAX_LABELS = 16  # labels drawn at most by a label figure: one per document (1,000) took minutes to draw
_MAX_PICKS = 1 << 22  # top-k picks counted at most by a record's still image (a sample of its tokens past it)
_MAX_INCHES = 24  # a figure's width and height at most: 20,000 layers (a 20 kB record file) took a minute to draw


def expert_colormap(num_experts: int) -> Any:
    """Distinct colours for expert ids; the same golden-ratio hue walk as static/common.js `expertColor`."""
    from matplotlib.colors import ListedColormap, hsv_to_rgb

    ids = np.arange(max(num_experts, 1))
    hsv = np.stack([(ids * 0.618034) % 1.0, 0.55 + 0.25 * (ids % 3) / 2, 0.95 - 0.2 * ((ids // 3) % 3) / 2], axis=1)
    return ListedColormap(hsv_to_rgb(hsv))


def png(figure: Any, dpi: int = 80) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # token text in scripts the default font lacks: drawn as boxes, no warning
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _labels(ax: Any, x: str, y: str, title: str, *, size: int = 10, legend: bool = False, note: str | None = None) -> None:
    """Axis labels, title (and legend, headed by `note`) of one panel."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    _title(ax, title, size)
    if legend:
        # beside the panel, not in it: placed "best" inside, it still lay over a line drawn the panel's width
        shown = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, title=note,
                          title_fontsize=7)
        for text in shown.get_texts():
            text.set_parse_math(False)  # labels from the data ("$" is text, not mathematics)
            text.set_text(_wrapped(text.get_text(), 2.5, 7))  # a long one made the legend wider than the figure


def _title(target: Any, text: str, size: float) -> None:
    """Title an Axes, or a Figure (its suptitle), with `text` wrapped to the width it has there: a title wider than
    that (a long label, channel or intervention) was cut at both ends, and a saved record's picture lost its counts."""
    if hasattr(target, "suptitle"):
        target.suptitle(_wrapped(text, target.get_figwidth() - 0.2, size), fontsize=size, parse_math=False)
    else:
        box = target.get_position()  # its share of the figure, less room for the ticks, labels and colour bar
        room = max(target.figure.get_figwidth() * (box.x1 - box.x0) - 0.4, 1.0)
        target.set_title(_wrapped(text, room, size), fontsize=size, parse_math=False)


def _wrapped(text: str, inches: float, size: float) -> str:
    """`text` in lines no wider than `inches` at `size` points, broken between words (inside a word longer than a
    line)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font, measure, room = FontProperties(size=size), TextToPath(), inches * 72 * 0.95  # drawn text runs a little wider
    fits = lambda line: measure.get_text_width_height_descent(line, font, ismath=False)[0] <= room  # noqa: E731
    lines: list[str] = []
    for word in text.split(" "):
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] += f" {word}"
            continue
        while len(word) > 1 and not fits(word):  # the longest start of the word that fits, found by halving
            low, high = 1, len(word) - 1
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(word[:middle]) else (low, middle - 1)
            lines.append(word[:low])
            word = word[low:]
        lines.append(word)
    return "\n".join(lines)


def _grown(figure: Any) -> Any:
    """`figure`, taller by its titles' extra lines (the most of each row of panels, and the suptitle's): wrapped
    titles took the plots' height, and constrained layout collapsed them."""
    rows: dict[int, float] = {}
    for ax in figure.axes:
        spec = ax.get_subplotspec()
        if spec is not None and ax.get_title():
            lines = ax.title.get_text().count("\n") * ax.title.get_fontsize()
            rows[spec.rowspan.start] = max(rows.get(spec.rowspan.start, 0), lines)
    extra = sum(rows.values()) + sum(text.get_text().count("\n") * text.get_fontsize() for text in figure.texts)
    figure.set_figheight(figure.get_figheight() + extra * 1.3 / 72)  # points of font, 1.3 of it a line
    return figure


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(min(width, _MAX_INCHES), min(height, _MAX_INCHES)), layout="constrained")


def _whole_ticks(figure: Any) -> Any:
    """Ticks at whole numbers only on the layer, expert and token axes (matplotlib put layers 0 and 2 alone on a
    four-layer grid, and experts at -0.5, 0.0, 0.5 ...); axes with ticks of their own (names) stay as they are."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    for ax in figure.axes:
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            if label.startswith(("layer", "expert", "token")) and not isinstance(axis.get_major_locator(), FixedLocator):
                axis.set_major_locator(MaxNLocator(integer=True))
    return figure


def _label_text(label: Any) -> str:
    """A label as a tick label, written as `shown_text` writes it (as the tables beside the figure do), in at most 16
    characters (a long one took the figure's room from its plots)."""
    return _cut(str(label), shown_text, 16)


def _token_text(text: str) -> str:
    """A token as a tick label, at most 14 characters: escapes written out (\\n, \\t) and its leading and trailing
    spaces as ␣, which a label does not draw: "the" and " the", a space and three spaces, each have a label of its own."""
    return _cut(text, lambda part: re.sub(r"^ +| +$", lambda run: "␣" * len(run.group()), repr(part)[1:-1]), 14)


def _cut(text: str, write: Callable[[str], str], most: int) -> str:
    """`text` as `write` writes it, in at most `most` characters: where longer, its first characters and "…", cut
    between two characters of `text` (cut after writing, a tick label ended inside an escape: `abcdefghijk\\u2`)."""
    shown = write(text)
    if len(shown) <= most:
        return shown
    end = min(len(text), most - 1)
    while end and len(write(text[:end])) > most - 1:
        end -= 1
    return write(text[:end]) + "…"


# ---------------------------------------------------------------- a record: grid and load


def _say(ax: Any, text: str) -> None:
    """An empty panel that says why: imshow of no rows or columns (no tokens, no experts) warned or failed."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([]), ax.set_yticks([])


def _grid(ax: Any, routing: Any, channel: str | None) -> None:
    """Top-1 expert per token (x) and layer (y), other channels greyed; long records sampled. A colour bar names
    the expert of each colour (and what grey means, where a cell is grey): without it a reader could not tell
    whether a colour stood for an expert id or a gate weight."""
    n = len(routing)
    _title(ax, "top-1 expert per token and layer" + (f" ({shown_text(channel)})" if channel else ""), 10)
    if not n:
        return _say(ax, "no tokens recorded")
    step = max(1, -(-n // _MAX_COLUMNS))
    picks = np.asarray(routing.experts[::step])  # a record of top-0 (saved and loaded like any) has no top-1: grey
    top1 = (picks[..., 0] if routing.top_k else np.full(picks.shape[:2], -1)).T.astype(float)
    grey = []
    if (top1 < 0).any():
        grey.append("no expert")
    top1[top1 < 0] = np.nan
    if channel is not None and not (shown := routing.mask(channel)[::step]).all():
        grey.insert(0, f"not {shown_text(channel)}")
        top1[:, ~shown] = np.nan
    cmap = expert_colormap(routing.num_experts).with_extremes(bad="#dddddd")
    image = ax.imshow(top1, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5,
                      vmax=max(routing.num_experts, 1) - 0.5, extent=(-0.5, n - 0.5, routing.layers - 0.5, -0.5))
    ax.set_xlabel("token" + (f" (one in {step} shown)" if step > 1 else ""))
    ax.set_ylabel("layer")
    _expert_key(ax, image, routing.num_experts, grey)


def _expert_key(ax: Any, image: Any, num_experts: int, grey: list[str]) -> None:
    """The grid's colour bar: one band per expert id, ticked at whole ids, labelled with what grey cells are."""
    from matplotlib.ticker import MaxNLocator

    bar = ax.figure.colorbar(image, ax=ax, pad=0.01)
    top = max(num_experts, 1) - 1
    ticks = MaxNLocator(nbins=6, integer=True).tick_values(0, top)
    bar.set_ticks(ticks[(ticks >= 0) & (ticks <= top)])
    bar.ax.tick_params(labelsize=7)
    key = "top-1 expert (id)"
    if grey:  # one line along the bar (the title names a long channel whole): past the bar's height it was cut
        first, *rest = _wrapped(f"grey: {' or '.join(grey)}", max(ax.figure.get_figheight() - 0.6, 1.0), 8).split("\n")
        key += f"\n{first}" + "…" * bool(rest)
    bar.set_label(key, fontsize=8)
    bar.ax.yaxis.label.set_parse_math(False)  # a channel's name is text, not mathematics


def _load(ax: Any, figure: Any, routing: Any, channel: str | None, layer: int | None, sampled: str = "") -> None:
    """Expert load as bars (one layer) or a layer × expert heat map; `sampled` says of which tokens, if not all."""
    if layer is not None:
        layer = layer_index(layer, routing.layers)
    share = routing.load(channel).share
    if not routing.num_experts:
        _say(ax, "no experts")
    elif layer is None:
        image = ax.imshow(share, aspect="auto", interpolation="nearest", cmap="viridis")
        figure.colorbar(image, ax=ax, label="share of top-k picks")
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
    else:
        ax.bar(np.arange(routing.num_experts), share[layer],
               color=expert_colormap(routing.num_experts)(np.arange(routing.num_experts)))
        ax.set_xlabel("expert")
        ax.set_ylabel("share of top-k picks")
    _title(ax, "expert load" + (f", layer {layer}" if layer is not None else "")
           + (f" ({shown_text(channel)})" if channel else "") + sampled, 10)


def routing_figure(routing: Any, kind: str = "grid", *, channel: str | None = None, layer: int | None = None) -> Any:
    """kind "grid": token × layer grid coloured by each token's top-1 expert (tokens of other
    channels greyed when `channel` is given); kind "load": expert load of `layer` as bars, or of all
    layers as a layer × expert heat map."""
    if kind == "grid":
        if layer is not None:  # figure("grid", layer=5) drew every layer of a record of 4, saying nothing
            raise TypeError(f"the grid figure shows every layer: layer={layer!r} is an option of kind 'load'")
        figure = _figure(min(16, 2 + len(routing) / 40) + 1, 1 + 0.18 * max(routing.layers, 4))  # + 1: the key
        _grid(figure.add_subplot(), routing, channel)
        return _grown(_whole_ticks(figure))
    if kind == "load":
        figure = _figure(10, 3 if layer is not None else 1 + 0.2 * max(routing.layers, 4))
        _load(figure.add_subplot(), figure, routing, channel, layer)
        return _grown(_whole_ticks(figure))
    raise ValueError(f"kind must be 'grid' or 'load', not {kind!r}")


def view_figure(routing: Any) -> Any:
    """The still image of a RoutingView: the grid above the expert load of every layer (of evenly spaced tokens
    in a record of more than `_MAX_PICKS` picks, which its title says), drawn in bounded time at any length."""
    figure = _figure(10, 2.2 + 0.12 * max(routing.layers, 4) * 2)
    top, bottom = figure.subplots(2, 1, height_ratios=[1.2, 1])
    _grid(top, routing, None)
    # the load of evenly spaced tokens, at most `_MAX_PICKS` picks: counting every token of a long record took
    # seconds at each display (2.3 s for a million tokens, 10 times that for ten million)
    step = max(1, -(-len(routing) * routing.layers * routing.top_k // _MAX_PICKS))
    _load(bottom, figure, routing.select(slice(None, None, step)) if step > 1 else routing, None, None,
          f" (one token in {step})" if step > 1 else "")
    _title(figure, repr(routing), 9)
    return _grown(_whole_ticks(figure))


# ---------------------------------------------------------------- analyses


def draw(kind: str, result: Any, **options: Any) -> Any:
    """The figure of an analysis result (`Table.plot`, `ExpertCard.plot`, `Effect.plot`)."""
    painters = {"top_tokens": _top_tokens, "token_concentration": _token_concentration, "label_load": _label_load,
                "label_divergence": _per_layer_lines, "agreement": _per_layer_lines, "transitions": _transitions,
                "hot_and_cold": _hot_and_cold, "route_changes": _route_changes, "expert_card": _expert_card,
                "effect": _effect, "token_effect": _token_effect}
    if kind not in painters:
        raise ValueError(f"no figure for {kind!r}")
    _check_options(kind, painters[kind], options, getattr(result, "figure_options", {}))
    return _grown(_whole_ticks(painters[kind](result, **options)))


def _check_options(kind: str, painter: Any, options: dict[str, Any], own: dict[str, Any]) -> None:
    """Refuse, in one line, an option the figure does not draw with (`label_load().plot(layer=2)`, a misspelt
    `plot(layr=2)`): it was ignored, and the figure drawn as if it had not been given."""
    import inspect

    named = [p.name for p in list(inspect.signature(painter).parameters.values())[1:] if p.kind != p.VAR_KEYWORD]
    unknown = [name for name in options if name not in named and name not in own]
    if unknown:
        raise TypeError(f"the {kind} figure has no option {unknown[0]!r}")


def _table_layer(layer: Any, record_layers: int) -> Any:
    """`layer` of a table's record as `layer_index` reads it (-1 the last), or as given where the record lacks it:
    the table's refusal then names the layers it has."""
    try:
        return layer_index(layer, record_layers)
    except ValueError:
        return layer


def _top_tokens(table: Any, layer: int | None = None, experts: Any = None, layers: Any = (0,),
                num_experts: int = 0, record_layers: int = 1, by: str = "count", **_: Any) -> Any:
    """Bar charts of each expert's top tokens (one layer of those counted, `layers`, by default the first; by default
    the first eight experts); a layer the table lacks or an expert the record lacks is refused in one line (they drew
    empty panels titled as if counted), and so is every layer (None), which one figure cannot show (it drew layer 0).
    The bars are what the table ranked `by` (a table by specialisation drew its counts under a title of counts)."""
    layers = list(layers)
    have = f"layers {layers[0]}..{layers[-1]}" if len(layers) > 1 else f"layer {layers[0]}" if layers else "no layers"
    if not layers:  # a record without layers: "layer must be a whole number, not None"
        raise ValueError("this table has the top tokens of no layers (its record has none): there is nothing to draw")
    if layer is None and len(layers) > 1:
        raise ValueError(f"the top tokens figure draws one layer, not every layer (layer=None): this table has {have}")
    given, layer = layer, layers[0] if layer is None else _table_layer(layer, record_layers)
    if layer not in layers:
        raise ValueError(f"this table has the top tokens of {have}, not of layer {given}")
    rows = table[table["layer"] == layer]
    experts = expert_ids(experts).tolist() if experts is not None else sorted(rows["expert"].unique())[:8]
    wrong = [e for e in experts if not 0 <= e < num_experts]
    if wrong:
        raise ValueError(f"this record has {numbered(num_experts, 'expert')}: there is no expert {wrong[0]}")
    cols = min(4, max(len(experts), 1))
    lines = -(-len(experts) // cols)
    figure = _figure(max(3 * cols, 5), 2.2 * max(lines, 1))  # 3 inches cut the title of one expert's chart
    axes = np.atleast_1d(figure.subplots(max(lines, 1), cols, squeeze=False)).ravel()
    colors = expert_colormap(max(num_experts, 1))
    for ax, expert in zip(axes, experts):
        part = rows[rows["expert"] == expert].sort_values("rank")
        _title(ax, f"expert {expert}", 9)
        if not len(part):  # chosen for no token counted (or none seen min_count times)
            _say(ax, "no tokens")
            continue
        ax.barh(np.arange(len(part))[::-1], part[by], color=colors(expert))
        ax.set_yticks(np.arange(len(part))[::-1], [_token_text(t) for t in part["text"]], fontsize=7,
                      parse_math=False)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("times chosen (top-k picks)" if by == "count" else "share of the token's uses", fontsize=7)
    for ax in axes[len(experts):]:
        ax.set_visible(False)
    ranked = ("each expert is chosen for most" if by == "count"
              else "most specialised to each expert (the share of a token's uses that go to it)")
    _title(figure, f"tokens {ranked}, layer {layer}", 10)
    return figure


def _token_concentration(table: Any, top_k: Any = 1, num_experts: int = 1, **_: Any) -> Any:
    """Count-weighted mean concentration per layer between the context-only and token-only bounds; `top_k`, the
    picks a token has, one for every layer or one per layer (a top-k intervention's layers have fewer)."""
    layers = [c for c in table.columns if str(c).startswith("layer ")]
    weights = table["count"].to_numpy(float)
    means = [np.average(table[c], weights=weights) if weights.sum() else 0.0 for c in layers]
    figure = _figure(7, 3)
    ax = figure.add_subplot()
    ax.plot(range(len(layers)), means, marker="o", label="tokens seen (count-weighted)")
    ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="pure token-id routing")
    uniform = np.broadcast_to(np.asarray(top_k, float), (len(layers),)) / max(num_experts, 1)
    ax.plot(range(len(layers)), uniform, color="grey", ls=":", lw=0.8, label="uniform (context only)")
    ax.set_ylim(0, 1.05)
    _labels(ax, "layer", "share to a token's usual experts", "token-id vs context routing", legend=True)
    return figure


def _label_load(table: Any, overall: Any = None, **_: Any) -> Any:
    """The specialisation heat map: per label, log2 of its expert load over the load of all tokens."""
    from matplotlib.colors import TwoSlopeNorm

    every = list(dict.fromkeys(table.index.get_level_values("label")))
    tokens = table.attrs.get("tokens", {})
    most = set(sorted(every, key=lambda label: -tokens.get(label, 0))[:_MAX_LABELS])
    labels = [label for label in every if label in most]  # those with most tokens, in order of appearance
    overall = np.asarray(overall, float)
    cols = min(4, max(len(labels), 1))  # no labelled tokens: an empty panel
    lines = -(-len(labels) // cols) or 1
    figure = _figure(3.4 * cols, 0.6 + (1 + 0.12 * overall.shape[0]) * lines)
    axes = np.atleast_1d(figure.subplots(lines, cols, squeeze=False)).ravel()
    image = None
    for ax, label in zip(axes, labels):
        share = table.xs(label, level="label").to_numpy(float)
        if share.size:
            lift = np.log2(np.divide(share, overall, out=np.ones_like(share), where=overall > 0).clip(1 / 4, 4))
            image = ax.imshow(lift, aspect="auto", interpolation="nearest", cmap="RdBu_r", norm=TwoSlopeNorm(0, -2, 2))
        else:
            _say(ax, "no experts")
        _title(ax, f"{shown_text(str(label))} ({counted(tokens[label], 'token') if label in tokens else '? tokens'})", 9)
        ax.set_xlabel("expert", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    if image is not None:
        figure.colorbar(image, ax=axes[: len(labels)].tolist(), label="log2 load vs all tokens", shrink=0.8)
    shown = f" ({len(labels):,} of {counted(len(every), 'label')}: those with most tokens)" if len(labels) < len(every) else ""
    _title(figure, "which experts each label uses more (red) or less (blue) than all tokens" + shown, 10)
    return figure


def _per_layer_lines(table: Any, **_: Any) -> Any:
    figure = _figure(7, 3)
    ax = figure.add_subplot()
    columns = list(table.columns)[: _MAX_LABELS + 1]  # jsd and the first labels' "vs rest"
    note = (f"{len(columns) - 1:,} of {counted(len(table.columns) - 1, 'label')} drawn"
            if len(columns) < len(table.columns) else None)
    for column in columns:
        ax.plot(table.index, table[column], marker="o" if len(table) < 40 else None, label=shown_text(str(column)),
                lw=2 if column in ("jsd", "overlap") else 1)
    divergence = "jsd" in table.columns
    _labels(ax, "layer", "bits" if divergence else "share",
            "divergence of the labels' routing per layer" if divergence else "agreement of two routings per layer",
            legend=True, note=note)
    return figure


def _transitions(table: Any, layer: int | None = None, measure: str = "tokens", record_layers: int = 2,
                 **_: Any) -> Any:
    """The transition matrix from `layer` (-1 the record's last, which no layer follows), or from every layer of the
    table (None), one panel each: `plot(layer=-1)` said the table lacked layer -1, `plot(layer=None)` was a TypeError."""
    every = "layer" in (table.index.names or [])  # every layer's table, or one layer's
    layers = list(table.index.levels[0]) if every else [table.figure_options["layer"]]
    shown = layers if layer is None else [_table_layer(layer, record_layers)]
    if shown[0] == record_layers - 1:
        raise followed_by_none(layer, record_layers)
    if shown[0] not in layers:  # a KeyError, or one layer's table drawn with another's title
        have = f"layers {layers[0]}..{layers[-1]}" if len(layers) > 1 else f"layer {layers[0]}"
        raise ValueError(f"this table has the transitions from {have}, not from layer {layer}")
    cols = min(4, len(shown))
    figure = _figure(5 * cols, 4.3 * -(-len(shown) // cols))
    # shared axes, tick and axis labels on the outer panels only (each title names its layers): every panel's, each
    # measured by the layout, took most of the 5.7 s gpt-oss-120b's 35 panels took to draw
    axes = figure.subplots(-(-len(shown) // cols), cols, squeeze=False, sharex=True, sharey=True).ravel()
    matrices = [table[table.index.get_level_values("layer") == one].droplevel("layer") if every else table
                for one in shown]  # (`xs` was a KeyError for a table of no experts)
    top = max((float(m.to_numpy(float).max()) for m in matrices if m.size), default=0.0)
    images = [_transition_panel(ax, matrix, one, top) for ax, matrix, one in zip(axes, matrices, shown)]
    if any(image is not None for image in images):  # one scale for every layer: a colour bar each took seconds
        figure.colorbar(next(i for i in images if i is not None), ax=axes[: len(shown)].tolist(), label=measure)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes[:len(shown)]):  # (subplots took the labels off every row but the last)
        bottom = i + cols >= len(shown)  # no panel below it, also above an empty place in the last row
        ax.tick_params(labelbottom=bottom, labelleft=not i % cols)
        if not bottom:
            ax.set_xlabel("")
        if i % cols:
            ax.set_ylabel("")
    return figure


def _transition_panel(ax: Any, matrix: Any, layer: int, top: float) -> Any:
    """One layer's experts × next experts matrix in `ax`, coloured from 0 to `top`: its image (None: no experts)."""
    image = None
    if matrix.size:
        image = ax.imshow(matrix.to_numpy(float), cmap="magma", interpolation="nearest", vmin=0, vmax=top or 1)
    else:
        _say(ax, "no experts")
    for axis, ids in ((ax.xaxis, matrix.columns), (ax.yaxis, matrix.index)):  # the ids, also of a subset of experts
        axis.set_major_formatter(lambda x, _, ids=ids.to_numpy(): str(ids[int(x)]) if x % 1 == 0 and 0 <= x < len(ids)
                                 else "")
    ax.set_xlabel(f"expert in layer {layer + 1}")
    ax.set_ylabel(f"expert in layer {layer}")
    _title(ax, f"transitions from layer {layer} to {layer + 1}", 10)
    return image


def _hot_and_cold(table: Any, cumulative: Any = None, top: int = 1, **_: Any) -> Any:
    """Each layer's cumulative share of picks over its experts, busiest first, one line a layer coloured by
    its number (a colour bar says which)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    curves = np.asarray(cumulative, float)
    figure = _figure(6.6, 3.4)  # 0.6 more than without the colour bar
    ax = figure.add_subplot()
    experts = curves.shape[1] if curves.ndim == 2 else 0
    layers = ScalarMappable(Normalize(0, max(len(curves) - 1, 1)), "viridis")
    for layer, curve in enumerate(curves):
        ax.plot(np.arange(1, experts + 1), curve, color=layers.to_rgba(layer), lw=0.8)
    ax.plot([0, experts], [0, 1], color="grey", ls="--", lw=0.8, label="perfect balance")
    ax.axvline(top, color="grey", ls=":", lw=0.8, label=f"top {top}")
    _labels(ax, "experts, busiest first", "cumulative share of picks",
            "how much of each layer's routing the busiest experts take (dark = early layers)", size=9, legend=True)
    if len(curves):
        figure.colorbar(layers, ax=ax, pad=0.01, label="layer")
    return figure


def _route_changes(table: Any, cells: Any = None, **_: Any) -> Any:
    cells = np.asarray(cells, bool)
    figure = _figure(min(16, 2 + len(table) / 40), 1 + 0.18 * max(cells.shape[1] if cells.ndim == 2 else 4, 4))
    ax = figure.add_subplot()
    if cells.size:
        ax.imshow(cells.T, aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1)
    else:  # imshow of no tokens warned
        _say(ax, "no layers" if len(cells) else "no tokens")
    ax.set_xlabel("token")
    ax.set_ylabel("layer")
    _title(ax, "where the route changed (black: top-k set differs)", 10)
    return figure


def _expert_card(card: Any, **_: Any) -> Any:
    figure = _figure(10, 3)
    tokens, labels, moves = figure.subplots(1, 3)
    color = expert_colormap(card.expert + 1)(card.expert)
    tokens.barh(np.arange(len(card.tokens))[::-1], card.tokens["count"], color=color)
    tokens.set_yticks(np.arange(len(card.tokens))[::-1], [_token_text(t) for t in card.tokens["text"]], fontsize=7,
                      parse_math=False)
    _title(tokens, "top tokens", 9)
    labels.bar(np.arange(len(card.labels)), card.labels["chose"], color=color)
    labels.set_xticks(np.arange(len(card.labels)), [_label_text(label) for label in card.labels["label"]], rotation=45,
                      fontsize=7, parse_math=False)
    _title(labels, "share of each label's tokens", 9)
    for frame, name, offset in ((card.previous, f"from layer {card.layer - 1}", -0.2),
                                (card.next, f"to layer {card.layer + 1}", 0.2)):
        if len(frame):
            moves.bar(np.arange(len(frame)) + offset, frame["share"], width=0.4, label=name)
            for i, expert in enumerate(frame["expert"]):
                moves.annotate(str(expert), (i + offset, 0), ha="center", va="bottom", fontsize=8)
    moves.set_xticks([])
    _title(moves, "top-1 experts of its tokens", 9)
    if len(card.previous) or len(card.next):  # an expert no token chose: a legend of nothing warned
        moves.legend(fontsize=7)
    _title(figure, f"expert {card.expert} of layer {card.layer}: {counted(card.picks, 'pick')} ({card.share:.1%} of the layer)",
           10)
    return figure


def _effect(effect: Any, **_: Any) -> Any:
    cells = np.asarray(effect.changes.figure_options["cells"], bool)
    figure = _figure(min(16, max(6, 3 + len(cells) / 40)), 2.4 + 0.1 * max(cells.shape[1], 4))   # room for the labels
    grid, lines = figure.subplots(1, 2, width_ratios=[4, 1])
    first = int(effect.changes.index[0]) if len(cells) else 0  # drawn at the positions `changes` is indexed by
    grid.imshow(cells.T, aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1,
                extent=(first - 0.5, first + len(cells) - 0.5, cells.shape[1] - 0.5, -0.5))
    answer = np.asarray(effect.changes.index)[np.asarray(effect.changes["label"]) == "final"]
    if len(answer):
        grid.axvspan(answer[0] - 0.5, answer[-1] + 0.5, color="tab:green", alpha=0.15, label="answer")
        grid.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # beside the grid, not on it
    grid.set_xlabel("position of the turn's tokens in the record\n(without the intervention)")  # one line ran into the next panel's
    grid.set_ylabel("layer")
    _title(grid, "route changed (black)", 9)
    lines.plot(effect.agreement["overlap"], np.arange(len(effect.agreement)), marker="o")
    lines.set_ylim(len(effect.agreement) - 0.5, -0.5)
    lines.set_xlim(0, 1.02)
    lines.set_xlabel("top-k overlap")
    _title(figure, effect.intervention.describe(), 10)
    return figure


def _token_effect(table: Any, by: str = "label", **_: Any) -> Any:
    """Mean change of log-probability per group of tokens (default: per label) ± its standard error."""
    groups = table.groupby(by)["change"]
    means, error = groups.mean(), groups.sem().fillna(0)
    figure = _figure(max(4, 0.9 * len(means) + 2), 3)
    ax = figure.add_subplot()
    ax.bar([str(x) for x in means.index], means.to_numpy(), yerr=error.to_numpy(), color="tab:red", alpha=0.75,
           capsize=3)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("mean log-probability change (nats)")
    counts = groups.size()
    ax.set_xticks(range(len(means)), [f"{_label_text(x)}\n({counted(counts[x], 'token')})" for x in means.index], fontsize=8,
                  parse_math=False)
    _title(ax, "how the intervention changes the model's confidence in each kind of token (± s.e.)", 9)
    return figure


def card_html(card: Any) -> str:
    """An ExpertCard as HTML for notebooks (every text escaped, a label as `shown_text` writes it: its U+202E reversed
    the cell), one HTML block (a label's blank line ended it in
    `nbconvert --to markdown`, the rest of the label read as Markdown: see `sanitize.one_html_block`)."""
    e = html.escape
    tokens = "".join(f"<tr><td><code>{e(repr(t))}</code></td><td>{c}</td><td>{s:.0%}</td></tr>"
                     for t, c, s in zip(card.tokens["text"], card.tokens["count"], card.tokens["specialisation"]))
    labels = "".join(f"<tr><td>{e(shown_text(str(name)))}</td><td>{n}</td><td>{chose:.1%}</td><td>{lift:.2f}×</td></tr>"
                     for name, n, chose, lift in card.labels.itertuples(index=False))
    moves = "; ".join(f"{name}: " + ", ".join(f"e{x} {s:.0%}" for x, s in zip(frame["expert"], frame["share"]))
                      for name, frame in ((f"from layer {card.layer - 1}", card.previous),
                                          (f"to layer {card.layer + 1}", card.next)) if len(frame))
    return one_html_block(f"<div class='{NO_TYPESETTING}'><b>Expert {card.expert}, layer {card.layer}</b>: {counted(card.picks, 'pick')}, {card.share:.1%} of the layer"
                          f"<table><tr><th>token</th><th>count</th><th>of its uses</th></tr>{tokens}</table>"
                          f"<table><tr><th>label</th><th>tokens</th><th>chose it</th><th title='its share of this label&#39;s tokens over its share of all tokens'>vs all tokens</th></tr>{labels}</table>"
                          f"<p>{e(moves)}</p></div>")
