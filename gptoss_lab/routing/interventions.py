"""Causal interventions on the routers of a model in this kernel: what does an expert do?

An `Intervention` says, per layer, which experts the router may not choose (`disable`), which it
must choose (`force`) and how many it picks (`top_k`). Apply it around turns with
`with intervention.apply(session): ...` (or `Session.ask(..., intervene=intervention)`), and see its
effect with `intervention.compare(session, prompt)`: the answer and its probability with and
without it, and which tokens changed route. `parse_ablate("1:3,2:5")` reads the `--ablate` option.
The mechanics (router hooks) live in `gptoss_lab.engines.hooks`.
"""
from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Number
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from .. import harmony
from ..events import Interrupted, counted, ctrl_c_says
from ..engines.hooks import (LayerEdit, check_plan, intervened, intervention_on, model_of, routers,
                              teacher_forced)
from ..settings import SettingsError, other_digits
from ..widgets import text_bar
from ..widgets.sanitize import shown_text
from .analysis import Frame, Table, at_least, described, flag, layer_index, result_table, whole
from .record import MAX_EXPERT, Routing, check_vocabulary, token_labels, token_texts, whole_ids

ALL = None  # the layer key meaning "every layer"
POSITION = "position"  # one rule for every token position the lab reports: an index into the reply's whole record
_SHOWN = 2000  # characters of each answer an Effect's display shows: a long answer filled the output twice
_ITEM = re.compile(r"^\s*(\*|-?\d+)\s*:\s*(\d+)(?:\s*-\s*(\d+))?\s*$", re.ASCII)  # `٣:١` refused, as config refuses ٣


@dataclass(frozen=True)
class Intervention:
    """Changes to how routers choose, per layer (`None` = every layer). Combine with `a | b`.

    Build with `disable`, `force`, `top_k` or `parse_ablate`; apply with `apply(target)`.
    """

    edits: tuple[tuple[int | None, LayerEdit], ...] = ()

    def __or__(self, other: Intervention) -> Intervention:
        if not isinstance(other, Intervention):  # "'int' object has no attribute 'edits'"
            return NotImplemented
        merged: dict[int | None, LayerEdit] = dict(self.edits)
        for layer, edit in other.edits:
            merged[layer] = _merge(merged[layer], edit, layer) if layer in merged else edit
        return Intervention(tuple(merged.items()))

    def plan(self, layers: int) -> dict[int, LayerEdit]:
        """Per-layer edits for a model of `layers` layers (edits for every layer merged into each; a negative
        layer counts from the last, as in Python)."""
        plan: dict[int, LayerEdit] = {}
        layers = whole(layers, "layers")  # 2.5 made a plan of layer 0.0
        for layer, edit in self.edits:
            for target in range(layers) if layer is ALL else [layer_index(layer, layers, "this model")]:
                plan[target] = _merge(plan[target], edit, target) if target in plan else edit
        return plan

    def check(self, target: Any) -> dict[int, LayerEdit]:
        """The per-layer plan for the model of `target` (a Session, LocalEngine or transformers model),
        checked against it: a one-line ValueError when a layer, an expert or a top-k does not exist there."""
        _, model = model_of(target)
        return check_plan(model, self.plan(len(routers(model))))

    @contextmanager
    def apply(self, target: Any) -> Iterator[Intervention]:
        """While the `with` block runs, the model of `target` (a Session, LocalEngine or transformers
        model) routes with this intervention.

        The engine sees it: positions cached without the intervention are not reused under it, nor the
        other way round (the next turn computes its prompt again), while what the engine derived from the
        weights (the lean forward's copy of lm_head, a 2.3 GB copy for gpt-oss-20b) is kept."""
        _, model = model_of(target)
        with intervened(model, self.check(model)):
            yield self

    def compare(self, session: Any, prompt: str, **options: Any) -> Effect:
        """Ask `prompt` without and with this intervention (greedy, or with a `temperature` from one seed for both,
        from the same conversation, which is left as it was) and measure the effect; see `Effect`. Options go to
        `Session.ask`: compare asks no approval, so a tool call under approval='ask' is refused (give approval='auto'
        or tools='none')."""
        return _compare(self, session, prompt, options)

    def token_effect(self, target: Any, records: Routing | Sequence[int] | Iterable[Routing]) -> Table:
        """How this intervention changes the model's confidence in each token, by teacher forcing: the
        log-probability of every token given the ones before, without and with it, and the change.

        `records`: a Routing (e.g. a reply's), token ids, or several Routings (a Corpus, a list: one
        forward pass each, rows tagged by `document`, under a progress bar; one of fewer than two tokens has none).
        `position`: the token's index in its record (`record.strings[position]`), as in an Effect's `changes`.
        `.plot(by="label")`: the mean change per group."""
        documents = _documents(records)
        _, model = model_of(target)
        plan = self.check(model)
        frames: list[pd.DataFrame] = []
        done = 0
        # two full passes a record: notebook 07's four conversations sat 15 s with no word, a Corpus minutes
        shown = text_bar(documents, desc="token effect", unit="text", disable=len(documents) < 2)
        with ctrl_c_says(lambda: _effect_stopped(done, len(documents), frames)):
            for done, record in enumerate(shown):
                frames.extend(_token_effect(model, plan, done, record))
        return _effect_table(frames)

    def __repr__(self) -> str:
        return f"Intervention({self.describe()})"

    def describe(self) -> str:
        """The intervention in words."""
        parts = []
        for layer, edit in self.edits:
            where = _where(layer)
            if edit.disabled:
                how = "" if edit.replace else " (slot left empty)"
                parts.append(f"disable expert{'s' * (len(edit.disabled) > 1)} {_ids(edit.disabled)} in {where}{how}")
            if edit.forced:
                parts.append(f"force expert{'s' * (len(edit.forced) > 1)} {_ids(edit.forced)} in {where}")
            if edit.top_k:
                parts.append(f"top-{edit.top_k} in {where}")
        return "; ".join(parts) or "no change"


def in_force(model: Any) -> str | None:
    """The intervention `model` routes under now, in words (None: as trained), for the records made meanwhile: a
    corpus routed, or a turn asked, inside `intervention.apply(...)` was saved as the model's own routing."""
    plan = intervention_on(model)
    return None if plan is None else Intervention(tuple(plan.items())).describe()


def _documents(records: Any) -> list[Routing | list[int]]:
    """token_effect's `records` as documents (Routings or lists of token ids), or a one-line TypeError for what is
    none: True was token 1, 1.7 token 1, b"ab" tokens 97 and 98, a float "not iterable", a generator "no len()"."""
    if isinstance(records, Routing):
        return [records]
    if isinstance(records, str):  # would be read as one "token id" per character
        raise TypeError("token_effect takes a Routing, token ids or several Routings, not text: "
                        "route it first (route([text], model)) or pass harmony.encode_text(text)")
    if isinstance(records, (bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(f"token_effect takes a Routing, token ids or several Routings (a Corpus, a list), "
                        f"not {described(records)}")
    records = list(records)  # a generator of Routings too
    if records and isinstance(records[0], (Number, np.number, np.bool_)):  # one document of ids
        records = [records]
    return [record if isinstance(record, Routing) else _document_ids(record) for record in records]


def _document_ids(record: Any) -> list[int]:
    """A document given as token ids, as a list of ints (each a whole number, not a bool or a float)."""
    if isinstance(record, (str, bytes, Mapping)) or not isinstance(record, (Sequence, np.ndarray)):
        raise TypeError(f"token_effect takes a Routing, token ids or several Routings, "
                        f"not {described(record)} among them")
    return whole_ids(record)


def _merge(mine: LayerEdit, edit: LayerEdit, layer: int | None) -> LayerEdit:
    """Two edits of one layer as one; refuses contradictions (two top-k values, two ways to disable)."""
    if mine.top_k and edit.top_k and mine.top_k != edit.top_k:
        raise ValueError(f"both interventions set top-k of {_where(layer)} ({mine.top_k} and {edit.top_k})")
    if mine.disabled and edit.disabled and mine.replace != edit.replace:
        raise ValueError(f"the interventions disable experts of {_where(layer)} in two different ways (replace)")
    return LayerEdit(mine.disabled | edit.disabled, mine.forced | edit.forced, mine.top_k or edit.top_k,
                     mine.replace if mine.disabled else edit.replace)


def _where(layer: int | None) -> str:
    """Which layer, in words ("layer -1" read as a layer numbered -1)."""
    if layer is ALL:
        return "every layer"
    return f"layer {layer}" if layer >= 0 else "the last layer" if layer == -1 else f"layer {layer} (from the last)"


def _ids(experts: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(experts)))


def _per_layer(spec: Mapping[int | None, Iterable[int] | int] | Iterable[tuple[int | None, int]] | str
               ) -> dict[int | None, frozenset[int]]:
    """{layer: experts} from a mapping, (layer, expert) pairs, or "L:E,..." text."""
    if isinstance(spec, str):
        return {layer: edit.disabled for layer, edit in parse_ablate(spec).edits}
    if not isinstance(spec, Iterable):  # "'int' object is not iterable"
        raise TypeError(f"experts are given as {{layer: [experts]}}, [(layer, expert), ...] or \"L:E,...\" text, "
                        f"not {described(spec)}")
    out: dict[int | None, set[int]] = {}
    for item in spec.items() if isinstance(spec, Mapping) else spec:
        if isinstance(item, (str, bytes)) or not isinstance(item, (Sequence, np.ndarray)) or len(item) != 2:
            raise TypeError(f"experts are given as (layer, expert) pairs, not {described(item)}: "  # "cannot unpack"
                            f"e.g. [(1, 3), (2, 5)] or {{1: [3], 2: [5]}}")
        layer, experts = item
        experts = [experts] if isinstance(experts, str) or not isinstance(experts, Iterable) else experts
        out.setdefault(None if layer is None else whole(layer, "layer"), set()).update(map(_expert, experts))
    return {layer: frozenset(experts) for layer, experts in out.items()}


def _expert(value: Any) -> int:
    """An expert id, refused in one line unless a whole number from 0 to MAX_EXPERT (-1 was accepted here and
    refused only when applied, where "-1 = the last" holds for layers, not experts)."""
    if not 0 <= whole(value, "expert") <= MAX_EXPERT:
        raise ValueError(f"expert ids go from 0 to {MAX_EXPERT} at most, not {value}")
    return int(value)


def disable(spec: Any, *, replace: bool = True) -> Intervention:
    """Routers may not choose these experts: `{layer: [experts]}`, `[(layer, expert), ...]` or
    "L:E,..." (layer `None` or "*" = every layer, -1 the last). `replace=True`: the router's next choice takes
    the place (renormalised over the new top-k); `replace=False`: the slot stays empty and the other
    gate weights are renormalised."""
    replace = flag(replace, "replace")  # "no" was True, None False
    return Intervention(tuple((layer, LayerEdit(disabled=experts, replace=replace))
                              for layer, experts in _per_layer(spec).items()))


def force(spec: Any) -> Intervention:
    """Routers must choose these experts (taking the last top-k places; their gate weights come from
    the router's own logits, and a token's slots stay in order of weight): same forms as `disable`."""
    return Intervention(tuple((layer, LayerEdit(forced=experts)) for layer, experts in _per_layer(spec).items()))


def top_k(k: int, layers: Iterable[int] | None = None) -> Intervention:
    """Routers pick `k` experts (in `layers`, default every layer), gate weights renormalised over them."""
    k = at_least(k, "top-k", 1, "experts a token picks")
    if layers is not None and (isinstance(layers, str) or not isinstance(layers, Iterable)):  # "'int' is not iterable"
        raise TypeError(f"layers is a list of layers (e.g. [0, 5]), not {described(layers)}")
    chosen = [ALL] if layers is None else dict.fromkeys(whole(layer, "layer") for layer in layers)  # each once
    return Intervention(tuple((layer, LayerEdit(top_k=k)) for layer in chosen))


def parse_ablate(text: str) -> Intervention:
    """`--ablate` text to an Intervention that disables experts: "LAYER:EXPERT,..." with "*" for
    every layer, negative layers counted from the last as in Python, and "A-B" for a range of experts,
    e.g. "1:3,2:5", "-1:3" or "*:0-3". Bad text raises
    SettingsError (a ValueError) with a one-line message for the user."""
    if not isinstance(text, str):   # parse_ablate(5) was "'int' object has no attribute 'split'"
        raise SettingsError(f"--ablate takes text, LAYER:EXPERT pairs (e.g. \"1:3,2:5\"), not {described(text)}")
    experts: dict[int | None, set[int]] = {}
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise SettingsError("--ablate needs LAYER:EXPERT pairs, e.g. --ablate 1:3,2:5")
    for item in items:
        match = _ITEM.match(item)
        if match is None:
            raise SettingsError(f"--ablate takes LAYER:EXPERT pairs separated by commas (e.g. 1:3,2:5 or *:0-3), "
                                f"not {item.strip()!r}{other_digits(item.strip())}")
        layer = None if match[1] == "*" else int(match[1])
        first, last = int(match[2]), int(match[3] or match[2])
        if last < first:
            raise SettingsError(f"--ablate: the expert range {first}-{last} is empty")
        if last > MAX_EXPERT:
            raise SettingsError(f"--ablate: there is no expert {last} (expert ids go up to {MAX_EXPERT} at most)")
        experts.setdefault(layer, set()).update(range(first, last + 1))
    return Intervention(tuple((layer, LayerEdit(disabled=frozenset(e))) for layer, e in experts.items()))


# ---------------------------------------------------------------- the effect of an intervention


@dataclass
class Effect:
    """What an intervention did to one question, measured on the same model and conversation.

    `answers`: each condition's final answer; `probabilities`: for each answer, its probability
    (product over its tokens) and per-token geometric mean under both conditions, by teacher forcing;
    `changes`: per token of the baseline turn (indexed by its `position` in the baseline reply's whole record,
    `baseline.routing.strings[position]`, as token_effect's `position`), in how many layers its route changed under
    the intervention (`route_changes`); `agreement`: per layer, the top-k overlap of the turn's routings;
    `routing`: the baseline reply's tokens routed without and with it (whole records, the same positions).
    """

    intervention: Intervention
    prompt: str
    baseline: Any                      # the Reply without the intervention
    intervened: Any                    # the Reply with it
    probabilities: pd.DataFrame
    changes: Any                       # analysis.Table (route_changes) over the baseline turn's tokens
    agreement: Any                     # analysis.Table (agreement per layer)
    routing: tuple[Routing, Routing] | None = field(default=None, repr=False)  # the baseline's tokens, both ways

    @property
    def changed(self) -> bool:
        """Whether the answer text changed."""
        return self.baseline.final != self.intervened.final

    def changed_tokens(self, n: int = 20) -> Frame:
        """The tokens whose route changed in the most layers (answer tokens first among equals), indexed by their
        position in the baseline reply's record (`baseline.routing.strings[position]`)."""
        n = at_least(n, "n", 0, "the tokens shown")  # -1 dropped the last row, as head(-1) does
        frame = self.changes[self.changes["layers_changed"] > 0]
        frame = frame.assign(answer=frame["label"] == "final")
        return frame.sort_values(["layers_changed", "answer", "top1_changed"], ascending=False).head(n)

    def plot(self) -> Any:
        """Route changes per token and layer, and the agreement per layer (matplotlib Figure)."""
        from ..widgets.routing_figures import draw

        return draw("effect", self)

    def __repr__(self) -> str:
        lines = [f"Intervention: {self.intervention.describe()}",
                 f"without: {_short(self.baseline.final)!r}", f"with:    {_short(self.intervened.final)!r}",
                 self.probabilities.to_string(float_format=lambda x: f"{x:.4g}")]
        lines.append(self._summary())
        return "\n".join(lines)

    def _summary(self) -> str:
        moved = self.changes["layers_changed"] > 0
        answer = self.changes["label"] == "final"
        return (f"{int(moved.sum()):,} of {counted(len(self.changes), 'token')} of the turn changed route in at least one layer "
                f"({int((moved & answer).sum()):,} of the {counted(int(answer.sum()), 'answer token')}); "
                f"mean top-k overlap {self.agreement['overlap'].mean():.1%}")

    def _repr_html_(self) -> str:
        """The answers, probabilities and changed tokens as HTML, model text and labels as `shown_text` writes them
        (the answer's ESC went raw into the saved notebook, its U+202E reversed the cell)."""
        from ..widgets.sanitize import NO_TYPESETTING, one_html_block

        e = html.escape
        moved = self.changed_tokens()
        rows = "".join(f"<tr><td>{int(i)}</td><td><code>{e(repr(r.text))}</code></td>"
                       f"<td>{e(shown_text(str(r.label)))}</td>"
                       f"<td>{int(r.layers_changed)}</td><td>{int(r.top1_changed)}</td></tr>" for i, r in moved.iterrows())
        return one_html_block(f"<div class='{NO_TYPESETTING}'><b>Intervention</b>: {e(self.intervention.describe())}"
                              f"<table><tr><th></th><th>answer</th></tr>"
                              f"<tr><td>without</td><td>{e(shown_text(_short(self.baseline.final)))}</td></tr>"
                              f"<tr><td>with</td><td>{e(shown_text(_short(self.intervened.final)))}</td></tr></table>"
                              f"{self.probabilities.to_html(float_format=lambda x: f'{x:.4g}')}"
                              f"<p>{e(self._summary())}.</p>"
                              f"<table><tr><th>{POSITION}</th><th>token</th><th>label</th><th>layers changed</th>"
                              f"<th>top-1 changed</th></tr>{rows}</table></div>")


def _short(answer: str) -> str:
    """An answer as an Effect shows it: at most `_SHOWN` characters (each Reply keeps all of it)."""
    return answer if len(answer) <= _SHOWN else f"{answer[:_SHOWN]}… ({len(answer):,} characters in all)"


def _token_effect(model: Any, plan: dict[int, LayerEdit], document: int, record: Any) -> list[pd.DataFrame]:
    """The rows of one record of `token_effect` (none for fewer than two tokens: no token to predict)."""
    ids = record.tokens.tolist() if isinstance(record, Routing) else record
    check_vocabulary(ids, int(getattr(model.config, "vocab_size", harmony.VOCAB_SIZE)))
    if len(ids) < 2:
        return []
    labels = record.labels if isinstance(record, Routing) else token_labels(ids)
    positions = list(range(1, len(ids)))
    without = teacher_forced(model, ids, positions)[0]
    changed = teacher_forced(model, ids, positions, plan)[0]
    return [pd.DataFrame({"document": document, "position": positions, "token": ids[1:], "text": token_texts(ids[1:]),
                          "label": labels[1:], "without": without, "with": changed, "change": changed - without})]


def _compare(intervention: Intervention, session: Any, prompt: str, options: dict[str, Any]) -> Effect:
    engine, model = model_of(session) if callable(getattr(session, "ask", None)) else (None, None)
    if engine is None:  # a Corpus or a record said "this needs a gpt-oss model in this kernel"
        raise TypeError(f"compare needs a Session (it asks the question twice), not {described(session)}")
    if options.get("new"):   # `ask(new=True)` forgets the conversation, which compare then could not put back
        raise ValueError("compare: new=True would forget your conversation; compare measures this turn's own answer "
                         "in any conversation (s.reset() first for none)")
    if options.get("intervene") is not None:   # the turn "with" failed under two, the one "without" was under one
        raise ValueError("compare: intervene= would route both turns under another intervention; compare measures "
                         "one against none: combine them, (a | b).compare(session, prompt)")
    plan = intervention.check(model)
    quiet = SimpleNamespace(stop_requested=False, handle=lambda event: None, approve=lambda call: None)  # shows nothing
    options = {"temperature": 0, **options, "routing": True, "view": quiet}
    if options["temperature"] and options.get("seed") is None and session.settings.seed is None:
        # sampled with no seed, each turn drew from where the other left torch's generator: a no-op intervention
        # "changed" the answer; one seed for both, so that only the intervention tells them apart
        options["seed"] = secrets.randbelow(2**63)
    replies = []
    for applied in (False, True):
        asked = len(session.replies)
        try:
            if applied:
                with intervention.apply(session):
                    replies.append(session.ask(prompt, **options))
            else:
                replies.append(session.ask(prompt, **options))
        finally:  # compare's turn is taken back, so `regenerate` and `rewind` act on the user's own last turn
            while len(session.replies) > asked:
                session.rewind()
        if replies[-1].interrupted:   # Ctrl-C ends a turn, not compare: it went on and measured the cut answer
            raise Interrupted(f"compare stopped (Ctrl-C) in the turn {'with' if applied else 'without'} the "
                              "intervention: nothing was measured, and the conversation is as it was")
    for applied, reply in zip(("without", "with"), replies):   # a failed turn has no routing: an AttributeError
        if reply.routing is None:
            from ..session import TurnError

            raise TurnError(f"compare: the turn {applied} the intervention "
                            + (f"failed: {reply.failed}" if reply.failed else "recorded no routing"))
    unasked = [c.recipient for r in replies for c in r.tool_calls if c.status == "skipped"
               and any("nobody could approve it" in e for e in r.errors)]
    if unasked:   # both answers measured a turn whose call was skipped: "nobody could give" approval, said by neither
        raise ValueError(f"compare: the model called {unasked[0]}, which needs approval, and compare cannot ask: give "
                         "approval='auto' to run calls unasked, or tools='none' (compare(session, prompt, approval=...))")
    with ctrl_c_says("compare stopped (Ctrl-C) while measuring the two answers: nothing was measured, and the "
                     "conversation is as it was"):
        return _measure(intervention, prompt, replies[0], replies[1], model, plan)


def _effect_table(frames: list[pd.DataFrame]) -> Table:
    """token_effect's rows of the records measured, as its table."""
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["document", "position", "token", "text", "label", "without", "with", "change"])
    return result_table(frame, "token_effect")


def _effect_stopped(done: int, total: int, frames: list[pd.DataFrame]) -> Interrupted:
    """What Ctrl-C during token_effect says, after `done` of `total` records: the rows of those are kept."""
    if not done:
        return Interrupted("token_effect stopped (Ctrl-C) before its first record was measured: nothing was kept")
    return Interrupted(f"token_effect stopped (Ctrl-C) after {done:,} of {counted(total, 'record')}: the rows of the records "
                       f"measured are kept {Interrupted.IN_KEPT}", kept=_effect_table(frames))


def _turn_start(labels: Sequence[str]) -> int:
    """Where a turn's routing begins its own part: its question, the last run of user tokens (0 if none)."""
    end = max((p for p, label in enumerate(labels) if label == "user"), default=-1)
    start = end
    while start > 0 and labels[start - 1] == "user":
        start -= 1
    return max(start, 0)


def _measure(intervention: Intervention, prompt: str, baseline: Any, changed: Any, model: Any,
             plan: dict[int, LayerEdit]) -> Effect:
    """Teacher-force both turns' tokens under both conditions: answer probabilities and routes."""
    from .analysis import agreement, route_changes

    rows, routes = {}, {}
    turn = _turn_start(baseline.routing.labels)
    for name, reply in (("answer without", baseline), ("answer with", changed)):
        ids = reply.routing.tokens.tolist()
        # this turn's answer: an earlier turn's final answer was counted as part of it
        answer = [p for p, label in enumerate(reply.routing.labels) if label == "final" and p > turn]
        row = {}
        for condition, edits in (("without", None), ("with", plan)):
            logprobs, experts, weights = teacher_forced(model, ids, answer, edits)
            row[f"P {condition}"] = float(np.exp(logprobs.sum())) if len(answer) else float("nan")
            row[f"per token {condition}"] = float(np.exp(logprobs.mean())) if len(answer) else float("nan")
            if name == "answer without":
                routes[condition] = Routing(ids, experts, weights, reply.routing.labels,
                                            num_experts=reply.routing.num_experts)
                if edits is not None:   # the record routed with it says so, saved or shown (it read as the model's own)
                    routes[condition].intervention = intervention.describe()
        rows[name] = row
    table = pd.DataFrame(rows).T
    # this turn's tokens, every slot: cut to the common top-k, top_k(1) agreed fully in the layers it changed
    a, b = (routes[condition].select(slice(turn, None)) for condition in ("without", "with"))
    # positions counted in the reply's whole record, as token_effect's and `strings`' (counted from the turn, the
    # changed token 73 read in the record was a token of the system message)
    changes = route_changes(a, b)
    changes.index = pd.RangeIndex(turn, turn + len(changes), name=POSITION)  # in place: a copy loses its figure
    return Effect(intervention, prompt, baseline, changed, table, changes, agreement(a, b),
                  (routes["without"], routes["with"]))

