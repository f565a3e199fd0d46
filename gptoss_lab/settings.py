"""Settings: how a session's turns run, validated once where they are given.

One frozen object shared by `Session`, `Session.ask(**overrides)` and the magics: a bad value is
refused at once with one line naming the value and what is allowed, never deep inside a turn.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import itertools
import math
import re
import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import pydantic
from pydantic import Field
from pydantic.dataclasses import dataclass

from .widgets.sanitize import WrittenOut

EFFORTS = ("low", "medium", "high")
APPROVALS = ("auto", "ask", "never")
ALIASES = {"reasoning": "effort", "approve": "approval", "max_tokens": "max_new_tokens"}

class SettingsError(WrittenOut, ValueError):
    """A setting was given a value it cannot take; the message is one line, written for the user."""


_NUMBERS = ("timeout", "max_new_tokens", "max_tool_calls", "max_skipped", "temperature", "top_p", "seed")


@dataclass(frozen=True, config=pydantic.ConfigDict(arbitrary_types_allowed=True, extra="forbid"))
class Settings:
    """How turns run; build with `make(...)` or `replace(...)`, which refuse bad values in one line."""

    effort: Literal["low", "medium", "high"] = "medium"
    approval: Literal["auto", "ask", "never"] = "ask"
    timeout: float = Field(120.0, gt=0, le=86400, allow_inf_nan=False)   # seconds a tool call may run
    max_new_tokens: int = Field(2048, ge=1, le=1_000_000)                # per engine call
    max_tool_calls: int = Field(8, ge=0, le=1000)                        # per turn
    max_skipped: int = Field(2, ge=1, le=100)  # skipped calls in a turn before the turn is ended
    temperature: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)  # None: the model's default
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    tools: Any = "python"          # "python,get_weather,browser", "none", or a list of names/functions/tools
    instructions: str | None = None
    date: str | None = None        # the conversation start date shown to the model (YYYY-MM-DD); None: today
    guard: bool = True             # rule out tokens Harmony forbids where the model writes (in-kernel models)

    @pydantic.field_validator("tools")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if value is None:
            return "none"
        if isinstance(value, str):
            return _tool_names(value) if value.strip() else "none"  # "" means no tools, and says so in %gptoss status
        if isinstance(value, Iterable):
            return tuple(value)
        raise ValueError("must be a comma-separated string of tool names or a list of tools")

    @pydantic.field_validator(*_NUMBERS, mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        """True or False is no number of a setting: `max_new_tokens=True` ran a turn of one token, `timeout=True`
        gave a tool call one second."""
        if isinstance(value, bool):
            kind = cls.__pydantic_fields__[info.field_name].annotation
            whole = int in (kind, *get_args(kind))
            raise ValueError(f"must be {'a whole number' if whole else 'a number'}")
        return value

    @pydantic.field_validator("date")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        try:
            return value if value is None else _dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("must be a date written YYYY-MM-DD") from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied and checked; None values are left out (not given), DEFAULT puts a
        setting back to its default, and aliases (`reasoning=`) are understood."""
        changes = {ALIASES.get(k, k): v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:   # as `make` says it (`ask(temprature=0.5)` named no setting meant)
            raise SettingsError(_not_a_setting(unknown[0]))
        changes = {k: getattr(_DEFAULTS, k) if v is DEFAULT else v for k, v in changes.items()}
        return make({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **changes})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def _tool_names(value: str) -> str:
    """`value`, a comma list of tool names, refused where a name is empty (`python,,` was kept and shown as written,
    offering python alone), `none` stands beside tools or another script's comma parts them (`python，browser` was one
    unknown name), saying what to write instead."""
    if other := next((c for c in value if c in _COMMAS), None):   # a CJK keyboard's: the list was one unknown name
        raise ValueError(f"must be separated by commas (,), not {other!r}: write {re.sub(f'[{_COMMAS}]', ',', value)!r}")
    names = [name.strip() for name in value.split(",")]
    given = [name for name in names if name]
    instead = ",".join(name for name in given if name != "none") or "none"
    empty = [str(i) for i, name in enumerate(names, 1) if not name]
    if empty:
        which = f"names {', '.join(empty[:-1])} and {empty[-1]}" if len(empty) > 1 else f"name {empty[0]}"
        raise ValueError(f"must not hold an empty name ({which} of {len(names)} {'are' if len(empty) > 1 else 'is'} "
                         f"empty): write {instead!r}")
    if "none" in given and len(given) > 1:
        raise ValueError(f"must not list none (no tools) beside tools: write {instead!r}")
    return value


_COMMAS = "，、､﹐"   # commas of other scripts and widths, which a comma list is not split at
# dashes that are not the hyphen-minus options start with (long, full-width, minus, hyphens), as pasted or typed
DASHES = "—–－−‐‑"


class _Default:
    """A setting's default value again (`%gptoss config seed=default`, `Session.configure(seed=None)`)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()
_DEFAULTS = Settings()


def make(values: dict[str, Any]) -> Settings:
    """`Settings(**values)` with pydantic's errors turned into one SettingsError line."""
    try:
        return Settings(**values)
    except pydantic.ValidationError as err:
        raise SettingsError(_one_line(err)) from None
    except TypeError as err:
        raise SettingsError(str(err)) from None


def parse_assignments(pairs: Iterable[str], extra: Sequence[str] = (), typed: Sequence[str] = ()) -> dict[str, Any]:
    """`["effort=high", "timeout=60"]` -> {"effort": "high", "timeout": "60"} (values checked by `replace`);
    `seed=default` -> {"seed": DEFAULT}, the setting's default again. Keys in `extra` (a caller's own, such
    as the magic's `threads`) pass through as given; any other key is refused, naming the keys as users write them.
    `typed`, the pairs as typed with their quotes, is what a hint quotes back."""
    out, written, pairs = {}, {}, list(pairs)
    for i, pair in enumerate(pairs):
        key, sep, value = (part.strip() for part in pair.partition("="))
        key = ALIASES.get(key, key)
        if not sep or key not in (*Settings.names(), *extra):
            keys = shown_keys(extra)
            dashed = key.lstrip("-" + DASHES).replace("-", "_")   # `—effort high`, a command line's habit, pasted
            meant = (next(iter(difflib.get_close_matches(folded(key), keys, 1)), None) if sep else
                     _spaced(pairs[i:]) if key in (*Settings.names(), *extra) else
                     _spaced([dashed, *pairs[i + 1:]]) if dashed != key and dashed in keys else
                     _unquoted(list(typed) if len(typed) == len(pairs) else pairs, i))
            raise SettingsError(f"expected KEY=VALUE with KEY one of {', '.join(keys)}; got {pair!r}"
                                + (f" (did you mean {meant}?)" if meant else ""))
        value = DEFAULT if value.lower() == "default" else value
        if key in out and out[key] != value:   # `effort=high effort=low`: the last one was kept, and nothing said
            raise SettingsError(f"{shown_key(key)} is given twice ({written[key]!r}, then {pair!r}): give it once")
        out[key], written[key] = value, pair
    return out


def _unquoted(pairs: list[str], i: int) -> str | None:
    """`instructions='Answer in French'` for `instructions=Answer in French` (`in` was refused as a key, with no word
    of quotes): the words of a text value after its pair, quoted; `effort=high` for `effort= high`, split at the space
    after its `=` (`high` was refused with no hint); None where the pair before takes neither."""
    key, _, value = (part.strip() for part in pairs[i - 1].partition("=")) if i else ("", "", "")
    if ALIASES.get(key, key) not in _TEXT:
        return f"{key}={_quoted(pairs[i].strip())}" if key and not value else None
    words = list(itertools.takewhile(lambda pair: "=" not in pair, pairs[i:]))
    return f"{key}={_quoted(' '.join(filter(None, [value, *words])))}"


def _quoted(text: str) -> str:
    """`text` in the quotes a shell gives back as it is: '...', else "..." where it holds a ' (and no " or \\)."""
    return f'"{text}"' if "'" in text and not {'"', "\\"} & set(text) else shlex.quote(text)


_TEXT = ("instructions", "tools")  # settings whose value is text, with spaces in it: `tools=python, browser`


def _spaced(pairs: list[str]) -> str:
    """`effort=high` for `effort high` or `effort = high` (a key and its value written apart, as a command line's)."""
    value = next((p.lstrip("=").strip() for p in pairs[1:3] if p.lstrip("=").strip()), "VALUE")
    return f"{pairs[0].strip()}={'VALUE' if '=' in value else value}"


_SHOWN = {setting: alias for alias, setting in ALIASES.items() if alias != "reasoning"}


def shown_key(name: str) -> str:
    """A setting's key as users write it: `approval` -> `approve`, `max_new_tokens` -> `max_tokens`."""
    return _SHOWN.get(name, name)


def shown_keys(extra: Sequence[str] = ()) -> list[str]:
    """The settings' keys as users write them (`approve`, `max_tokens`), then `extra`."""
    return [shown_key(name) for name in Settings.names()] + list(extra)


# Keywords people write for a setting of another name (function tools are tools=[f]).
_MEANT = {"functions": "tools", "function": "tools"}


# pydantic's words for a value of the wrong kind ("must be a valid boolean, unable to interpret input"), said as what
# the setting takes
_PLAIN = {"bool_parsing": "must be on or off (true/false, yes/no, 1/0)", "bool_type": "must be on or off",
          "float_parsing": "must be a number", "float_type": "must be a number",
          "int_parsing": "must be a whole number", "int_type": "must be a whole number",
          "int_from_float": "must be a whole number", "string_type": "must be text (a str)"}


def setting_meant(name: str) -> str | None:
    """The setting a name no setting has was likely meant for (`temprature`, `functions`), else None."""
    return _MEANT.get(name) or next(iter(difflib.get_close_matches(name, Settings.names(), 1)), None)


def _not_a_setting(name: str) -> str:
    """"temprature is not a setting (did you mean temperature?); settings are ...", of a keyword no setting has."""
    meant = setting_meant(name)
    return f"{name} is not a setting{f' (did you mean {meant}?)' if meant else ''}; settings are {', '.join(Settings.names())}"


def _one_line(err: pydantic.ValidationError) -> str:
    problems = []
    for e in err.errors(include_url=False):
        field = ".".join(str(p) for p in e["loc"]) or "settings"
        if e["type"] == "unexpected_keyword_argument":   # not its value: it may be a function, a DataFrame ...
            problems.append(_not_a_setting(field))
            continue
        message = _PLAIN.get(e["type"]) or e["msg"][0].lower() + e["msg"][1:]
        message = message.replace("input should be", "must be").replace("value error, ", "")
        hint = (number_meant(e["input"], whole=e["type"] == "int_parsing") if e["type"] in ("int_parsing",
                                                                                           "float_parsing") else
                _choice_meant(field, e["input"]) if e["type"] == "literal_error" else "")
        written = re.fullmatch(r": write (\d+)", hint)
        if written and (most := _most(field)) is not None and int(written[1]) > most:   # 10**9 meant "no limit"
            hint += f" (at most {most})"
        problems.append(f"{field} {message}, not {e['input']!r}{hint}" if "input" in e else f"{field}: {message}")
    return "; ".join(problems)


def _most(field: str) -> int | float | None:
    """The largest value the setting `field` takes (its `le` bound), else None."""
    info = Settings.__pydantic_fields__.get(field)
    bounds = [m.le for m in getattr(info, "metadata", ()) if getattr(m, "le", None) is not None]
    return bounds[0] if bounds else None


def _choice_meant(field: str, value: Any) -> str:
    """" (did you mean 'high'?)" for `effort=HIGH` or `effort=hihg`, as the cell's `-e HIGH` says, else ""."""
    info = Settings.__pydantic_fields__.get(field)
    if info is None or not isinstance(value, str):
        return ""
    choices = [str(c) for c in get_args(info.annotation)]
    near = [c for c in choices if c == folded(value.strip())] or difflib.get_close_matches(folded(value), choices, 1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def folded(word: str) -> str:
    """`word` as a mistyped word is compared with the one meant: `EFFORT` and the full-width `ｈｉｇｈ` (a CJK keyboard's)
    as effort and high, which difflib found nothing near."""
    return unicodedata.normalize("NFKC", word).casefold()


def nearest(word: str, known: Iterable[str], meant: dict[str, str] | None = None) -> str | None:
    """The known word `word` most likely meant: itself in another case or width (`LOAD`, `ｌｏａｄ`), else `meant`'s
    word for it, else the closest, options compared without their dashes (`--exprot` was 'did you mean --text?', the
    dashes alike), else the shortest it starts. The lab's command lines name what was meant with it."""
    word, known = folded(word), set(known)
    same = sorted(k for k in known if folded(k) == word)
    if same:
        return same[0]
    if (meant or {}).get(word, "").split(" ")[0] in known:   # `disconnect` was 'did you mean connect?', its opposite
        return meant[word]
    bare = {k.lstrip("-"): k for k in sorted(known) if k.startswith("-") == word.startswith("-")}
    near = difflib.get_close_matches(word.lstrip("-"), list(bare), n=1, cutoff=0.7)
    if near:
        return bare[near[0]]
    start = word.lstrip("-")   # cut short (`--dev`, `lo`): the shortest word it starts, as argparse read it no more
    longer = sorted((k for k in bare if len(start) > 1 and k.startswith(start)), key=lambda k: (len(k), k))
    return bare[longer[0]] if longer else None


UNRECOGNIZED = re.compile(r"unrecognized arguments: (-\S+)")   # argparse's words for an option it does not know


def other_digits(value: Any) -> str:
    """": write 3" for a number written with another script's digits (`٣`, `３`), else "": Python's int() reads them,
    so `%%gptoss --max-tokens ٣` ran where `%gptoss config max_tokens=٣` was refused; the lab reads the digits 0-9."""
    if not isinstance(value, str) or value.isascii():
        return ""
    plain = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in value)
    return f": write {plain}" if plain.isascii() else ""


def number_meant(value: Any, *, whole: bool) -> str:
    """": write 1000" for a number written as people write it and Python does not read it, else "": another script's
    digits (`٣`), a thousands comma (`1,000`), a decimal comma (`0,7`), a whole number in e-notation (`1e3`); each was
    only "must be a whole number" (`whole`) or "must be a number"."""
    hint = other_digits(value)
    if hint or not isinstance(value, str):
        return hint
    text = value.strip()
    if re.fullmatch(r"\d{1,3}(,\d{3})+", text):   # (`1,000` of a number with decimals may be 1.000 too)
        plain, point = text.replace(",", ""), text.replace(",", ".")
        return f": write {plain}" if whole or text.count(",") > 1 else f": write {plain} or {point}"
    if not whole and re.fullmatch(r"\d*,\d+", text):
        return f": write {'0' * text.startswith(',')}{text.replace(',', '.')}"
    if whole and re.fullmatch(r"\d+(\.\d+)?[eE]\+?\d+", text) and float(text).is_integer():
        return f": write {int(float(text))}"
    if whole and (n := _arithmetic(text)) is not None:
        return f": write {n}"
    return ""


def _arithmetic(text: str) -> int | None:
    """The whole number a power or product of digits stands for, as Python or a calculator writes it (`10**9`, `2^12`,
    `4*1024`), else None (also for one of more than 30 digits: no setting takes it). Read, never evaluated."""
    power = re.fullmatch(r"(\d{1,6})\s*(?:\*\*|\^)\s*(\d{1,3})", text)
    if power:
        base, exponent = int(power[1]), int(power[2])
        return base**exponent if exponent * math.log10(max(base, 1)) < 30 else None
    if re.fullmatch(r"\d{1,15}(\s*\*\s*\d{1,15})+", text) and len(text) < 60:
        return math.prod(int(factor) for factor in text.split("*"))
    return None
