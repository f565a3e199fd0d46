"""`%gptoss` and `%%gptoss`: parse the options, pick a view, hand over to the Session. Nothing else.

Each command has its own typed parser with real `--help`; values are checked by `Settings`
(one line naming the bad value) and engine problems come back as one-line UsageErrors.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import functools
import keyword
import os
import re
import shlex
import textwrap
import unicodedata
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .arguments import Parser, plain
from .events import counted, ctrl_c_says
from .settings import (APPROVALS, DASHES, DEFAULT, EFFORTS, UNRECOGNIZED, Settings, SettingsError, nearest,
                       number_meant, other_digits, parse_assignments, shown_key, shown_keys)
from .tools.base import error_message
from .widgets import say
from .widgets.sanitize import KEYLIKE, variable_named, visible, visible_line

_FIELD = re.compile(r"\{\{([^{}]*)\}\}|\{([^\W\d]\w*(?:\.\w+|\[[^\[\]{}]+\])*)\}")  # names as Python has them
_CELL_EXAMPLE = """example:
  %%gptoss --effort high --approve ask
  What is the mean of {data}?"""
_LINE_EXAMPLE = """examples:
  %gptoss load tiny                 (or openai/gpt-oss-20b on a GPU, or a checkpoint folder)
  %gptoss config effort=high approve=auto timeout=60
  %gptoss browse ~/papers           (then: %%gptoss --tools browser)
  %gptoss load --help               (help for one command)"""


class _HelpShown(Exception):
    """argparse printed the help the user asked for; the magic ends quietly."""


class _Once(argparse._StoreAction):
    """An option given once: argparse kept the last of `--effort high --effort low` (`-o a -o b`) and said nothing."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        first = getattr(namespace, self.dest, self.default)
        if self.option_strings and first is not self.default and first != values:   # (the same value twice: no doubt)
            raise argparse.ArgumentError(self, f"given twice ({first!r}, then {values!r}): give it once")
        super().__call__(parser, namespace, values, option_string)


class _Parser(Parser):
    """The lab's parser reporting mistakes as one-line UsageErrors, never exiting the kernel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in (None, "store"):   # every option that takes a value, in every command
            self.register("action", name, _Once)

    def error(self, message: str) -> None:  # type: ignore[override]
        message = plain(message)
        args = getattr(self, "_args", [])
        command = self._command(args)
        misplaced = _options(_cell_parser()) - _words_known(command)   # (`connect --timeout` is connect's own)
        option = next((a.split("=")[0] for a in args if a.split("=")[0] in misplaced), None)
        if self.prog == "%gptoss" and option and not command.prog.endswith(" config"):  # `%gptoss --routing`
            dest = next(a.dest for a in _cell_parser()._actions if option in a.option_strings)
            every = (f" (`%gptoss config {shown_key(dest)}=VALUE` sets it for every cell)" if dest in Settings.names()
                     else "")   # `config routing=on` is no setting: --routing and --ablate are asked per cell
            raise UsageError(f"%gptoss: {option} is an option of a %%gptoss cell: it goes on the cell's first line, "
                             f"above the question{every} (see %%gptoss --help)")
        raise UsageError(f"{command.prog}: {message}{self._did_you_mean(message)} (see {command.prog} --help)")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._args = list(args or [])  # the command they name, for `_did_you_mean`
        self._long_dashes(self._args)
        namespace, self._extras = self.parse_known_args(args, namespace)   # the words no option or command took
        if self._extras:
            self.error(f"unrecognized arguments: {' '.join(self._extras)}")
        return namespace

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._given = list(args or [])   # a command's own words (a subparser's too), for a required value's hint
        return super().parse_known_args(args, namespace)

    def _long_dashes(self, args: list[str]) -> None:
        """Refuse an option written with a long dash, as word processors and web pages write `--` (`—device`): it was
        read as a value (`load —dequantize` looked for a folder of that name) or a stray word."""
        command = self._command(args)
        for word in args:
            long = word[:1] in "—–"   # one long dash for two hyphens; other dashes (－－effort, a CJK keyboard's) twice
            option = "--" + (word[1:] if long else word.lstrip(DASHES)).split("=")[0]
            if word[:1] in DASHES and option in _words_known(command):
                dash = "a long dash" if long else "a dash that is not a hyphen"
                raise UsageError(f"{command.prog}: {word.split('=')[0]} starts with {dash} ({word[0]}), not two "
                                 f"hyphens: write {option} (see {command.prog} --help)")

    def _did_you_mean(self, message: str) -> str:
        """`: did you mean 'load'?` after `invalid choice: 'lod'` or `unrecognized arguments: --efort`: the nearest
        command, choice or option, of the command given where there is one (argparse reports its unknown options
        here, on the parser of all commands), when one is near."""
        if " not allowed with argument " in message:   # two options of which a command takes one (--device-map)
            return ": give one of them, not both"
        if message.startswith("the following arguments are required: "):   # `connect --url=URL`: as `--url URL`
            given = getattr(self, "_given", [])
            return next((hint for word in given if word.startswith("-")
                         and (hint := self._elsewhere(word.split("=")[0], self, given))),
                        _example(self))
        if (missing := _NO_VALUE.fullmatch(message)) is not None:   # `--effort` at the line's end: what it takes
            action = next(a for a in self._command(getattr(self, "_args", []))._actions
                          if missing[1] in a.option_strings)
            takes = "|".join(map(str, action.choices)) if action.choices else action.metavar or action.dest.upper()
            return f": write {missing[1]} {takes}"
        word = _INVALID_CHOICE.search(message) or UNRECOGNIZED.search(message)
        if word is None:   # a stray word, not an option: a question or a command on the wrong line
            return self._misplaced(getattr(self, "_args", [])) if "unrecognized arguments" in message else ""
        args = getattr(self, "_args", [])
        parser = self._command(args)
        if parser.prog.endswith(" config") and word[1].startswith("-"):  # `config --effort high`: effort=high
            key, _, value = word[1].lstrip("-").replace("-", "_").partition("=")
            near = difflib.get_close_matches(key, shown_keys(_CONFIG_EXTRA), n=1, cutoff=0.7)
            after = args[args.index(word[1]) + 1:args.index(word[1]) + 2] if word[1] in args else []
            value = value or (after[0] if after and not after[0].startswith("-") else "...")
            return f": settings are KEY=VALUE, did you mean '{near[0]}={value}'?" if near else ""
        elsewhere = self._elsewhere(word[1].split("=")[0], parser, args) if word[1].startswith("-") else ""
        if elsewhere:
            return elsewhere
        if parser is self and self.prog == "%gptoss" and _asks(args):   # `%gptoss History of Rome?`: no command
            return self._misplaced(args)
        near = nearest(word[1].split("=")[0] if word[1].startswith("-") else word[1], _words_known(parser), _MEANT)
        if near:
            return f": did you mean {near!r}?"
        return "" if message.startswith("argument -") else self._misplaced(args)  # (an option's value: not misplaced)

    def _elsewhere(self, option: str, parser: argparse.ArgumentParser, args: list[str]) -> str:
        """Where an option `parser` lacks belongs: `load --model tiny` names load's model without an option, and
        `%%gptoss --device cpu` or `load --export` is another command's option (they were told the question goes
        below the cell's line, or "did you mean '--effort'?")."""
        name = option.lstrip("-").replace("-", "_")
        written = next((w for w in args if w.split("=")[0] == option), option)
        after = args[args.index(written) + 1:args.index(written) + 2] if written in args else []
        value = written.partition("=")[2] or (after[0] if after else "")
        value = shlex.quote(value) if _quotable(value) else name.upper()   # a key, a page of garbage: its name
        if _takes(parser, name):   # `load --model tiny`
            return f": the {name} is written without {option}: `{parser.prog} {value}`"
        commands = _line_commands().values()
        owners = [f"`{c.prog}`" for c in commands if c.prog != parser.prog and option in _options(c)]
        if owners:
            return f": {option} is an option of {' and '.join(owners)}" + (", not of a %%gptoss cell"
                                                                           if self.prog == "%%gptoss" else "")
        takers = [c.prog for c in commands if c.prog != parser.prog and _takes(c, name)]   # `load --url http://...`
        return f": a {name} is given to `{takers[0]}`, written without {option}: `{takers[0]} {value}`" if takers else ""

    def _command(self, args: list[str]) -> argparse.ArgumentParser:
        """The parser of the command `args` name (`%gptoss load ...`: load's), or this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and args:
                return action.choices.get(args[0], self) if args[0] != "help" else self
        return self

    def _misplaced(self, args: list[str]) -> str:
        """A hint where a question, or a cell's option, was written on the wrong line (`%gptoss -e high`,
        `%gptoss What is 2+2?`, `%%gptoss What is 2+2?`), or a command's help asked as `%gptoss help load`."""
        extras = getattr(self, "_extras", [])   # (`--approve never --xyz`: `never` is no question)
        if self.prog == "%%gptoss" and extras == args and _is_command(args):   # `%%gptoss load tiny`
            return f": `{shlex.join(args)}` is a command of the line magic: write `%gptoss {shlex.join(args)}`, one %"
        if self.prog == "%%gptoss" and any(not a.startswith("-") for a in extras):
            return ": the question goes on the lines below %%gptoss, not on its line"
        if self.prog != "%gptoss" or not args:
            return ""
        commands = {name for a in self._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices}
        if args[0] == "help" and len(args) > 1 and args[1] in commands:   # (`help --bogus`: no `%gptoss --bogus --help`)
            return f": for one command's help, `%gptoss {args[1]} --help`"
        if args[0] not in commands and (len(args) > 1 or args[0].endswith("?")):   # (`load tiny extra`: a stray word)
            return ": to ask, write the question on the lines below a %%gptoss line"
        return ""

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if status:
            raise UsageError(message or self.format_usage())
        raise _HelpShown


# whether a command, as given, changes the lab's model, session or settings (refused to the python tool's code), for
# every command: `config` changes them only given KEY=VALUE (alone it shows them); help, status, history, routing and
# doctor only read
_CHANGES: dict[str, Callable[[argparse.Namespace], bool]] = {
    **dict.fromkeys(("load", "connect", "use", "unload", "reset", "regenerate", "browse"), lambda opts: True),
    "config": lambda opts: bool(opts.settings),
    **dict.fromkeys(("help", "status", "history", "routing", "doctor"), lambda opts: False),
}
# what stays as it was when Ctrl-C stops a long command (it changes the session only once its work is done)
_STOPPED = {"load": "nothing was loaded", "connect": "nothing was connected", "browse": "the browser reads what it "
            "read before", "doctor": "nothing was changed"}
_CONFIG_EXTRA = ("threads",)  # `%gptoss config` keys of the magic's own, past the session's settings
# commands of other tools' words, which difflib matched by spelling (`disconnect`: 'connect'), or not at all
_MEANT = {"disconnect": "unload", "free": "unload", "clear": "reset", "new": "reset", "restart": "reset",
          "export": "history --export", "info": "status"}
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'")
_NO_VALUE = re.compile(r"argument ([^\s/:]+)\S*: expected one argument")   # argparse's words for an option's missing value
_KEY_RUN = re.compile(r"[A-Za-z0-9]{16,}")  # letters and digits unbroken, as a key's random part is written
# names IPython writes (`_` and `_1` after each output, `_i3` each input) or owns: a reply kept there was overwritten
_IPYTHON_NAME = re.compile(r"_+|_\d+|_i+|_i\d+|_[ido]h|In|Out|get_ipython|exit|quit")
_QUOTED = 100  # the longest word of the user's line an error quotes whole (a longer one: its first 40 characters)


def _example(parser: argparse.ArgumentParser) -> str:
    """`: for example `%gptoss connect http://...``, the command line of `parser`'s example (its help's last line),
    without its note; "" for a parser with none."""
    line = (parser.epilog or "").partition("example:\n")[2].strip().split("  (")[0]
    return f": for example `{line}`" if line else ""


def _quotable(value: str) -> bool:
    """Whether a hint may quote the user's `value` back in the command to write: one short printable word that is not
    what an API key looks like (`connect --url sk-...` hinted "`%gptoss connect sk-...`")."""
    return bool(value) and len(value) <= _QUOTED and value.isprintable() and not KEYLIKE.fullmatch(value)


def _said(message: str, line: str) -> str:
    """`message` as the user reads it: a word of `line` longer than `_QUOTED` characters cut short (a value pasted by
    mistake was quoted back whole, a page long), control characters and line breaks written out (one line, whatever was
    typed), and the keys of `line` hidden."""
    for word in sorted(set(re.split(r"[\s'\"=]+", line)), key=len, reverse=True):
        if len(word) > _QUOTED and not _key_parts(word):   # (a word holding a key: the key is hidden, not cut)
            message = message.replace(word, word[:40] + "…")
    return visible_line(_keys_hidden(message, line))


def _key_parts(word: str) -> list[str]:
    """The parts of one word of the magic's line that may be an API key: its `=` value (`--model=sk-...`), else the
    word (`Zq81x...==`, a key of base64), else each part of it between characters no key holds: a path's or URL's
    segment, host label or query value (`browse /tmp/sk-.../docs`, `connect http://h/v1?a=1&key=sk-...`)."""
    whole = [part for part in (word.partition("=")[2], word) if KEYLIKE.fullmatch(part)]
    return whole[:1] or [part for part in re.split(r"[^\w+=-]+", word) if _key_segment(part)]


def _key_segment(part: str) -> bool:
    """Whether a path segment may be a key: key-like, with a random-looking run of letters and digits (`Zq81xKey...`);
    a folder named in words (`run_2024_final_model_v2`, pytest's `test_a_long_name_0`) is still shown."""
    runs = _KEY_RUN.findall(part)
    return bool(KEYLIKE.fullmatch(part)) and any(re.search(r"\d", run) and re.search(r"[A-Za-z]", run) for run in runs)


def _keys_hidden(message: str, line: str) -> str:
    """`message` with each word of the magic's `line` that may be an API key (an option's or a setting's value too)
    written `…`, and why: a key pasted in any option (`connect URL --model sk-...`, `config seed=sk-...`) was quoted
    back by the error, and stayed in the saved notebook."""
    keys = {key for word in re.split(r"[\s'\"]+", line) for key in _key_parts(word)}
    hidden = message
    for key in sorted(keys, key=len, reverse=True):   # as written, or lower-cased in a URL's host name
        hidden = re.sub(re.escape(key), "…", hidden, flags=re.IGNORECASE)
    if not (keys and "…" in hidden):   # hidden here, or by the remote engine's shown URL: said why
        return message
    body, see = re.fullmatch(r"(.*?)( \(see \S+(?: \S+)? --help\))?", hidden, re.DOTALL).groups()   # type: ignore[union-attr]
    return f"{body} (… is not shown: it looks like an API key, which goes in an environment variable: " \
           f"--api-key-env VAR){see or ''}"


def _takes(parser: argparse.ArgumentParser, name: str) -> bool:
    """Whether `parser` takes `name` as a positional argument (the url of `connect URL`, the model of `load MODEL`)."""
    return any(action.dest == name and not action.option_strings for action in parser._actions)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of `parser` (-h and --help aside)."""
    return {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}


def _asks(words: list[str]) -> bool:
    """Whether a line magic's words read as a question (`History of Rome?`, `Use numpy to find the mean`), not a
    command misspelt (`lod tiny`): a question mark at the end, or five words or more with no option or setting."""
    if len(words) >= 5:
        return not any(w[:1] == "-" or "=" in w for w in words)
    return bool(words) and words[-1].endswith("?")


def _is_command(words: list[str]) -> bool:
    """Whether `words` make a whole `%gptoss` command (`load tiny`, `config effort=high`)."""
    try:
        _line_parser().parse_args(words)
    except (UsageError, _HelpShown):
        return False
    return True


def _words_known(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings and choices of `parser`, and its commands' names."""
    known: set[str] = set()
    for action in parser._actions:
        known.update(action.option_strings)
        if action.choices is not None:
            known.update(map(str, action.choices))
    return known


def _given(value: str) -> str:
    """An argument's value, refused when empty: `load ""` would load the current folder, `doctor ""` size tiny."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"an empty value ({value!r}) is not allowed")
    return value


def _tool_list(value: str) -> str:
    """`--tools NAMES`, refused when empty: `--tools ''` (a variable of a shell's, left unset) ran the cell with no
    tools and said nothing of it."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"{value!r} names no tool: write --tools none for no tools in this cell, or "
                                         "the tools' names (python, browser, your functions)")
    return value


def _variable_name(value: str) -> str:
    """`--api-key-env VAR`, refused where it holds what no environment variable's name holds (a space, an `=`): it was
    told "its name is not shown: it looks like a key" (not quoted: it may hold the key itself)."""
    held = "a space" if any(c.isspace() for c in value) else "an = sign" if "=" in value else ""
    if held:
        raise argparse.ArgumentTypeError(f"the name given holds {held}, which no environment variable's name holds "
                                         "(names are letters, digits and _, such as OPENAI_API_KEY)")
    return _given(value)


def _number(kind: type) -> Any:
    """An argparse type reading `kind` from the digits 0-9 only: int() and float() also read `٣`, which the lab's
    settings refuse (one reading for every number a magic takes), saying what to write instead."""
    def read(text: str) -> Any:
        if not text.isascii():
            raise argparse.ArgumentTypeError(f"a number in the digits 0-9, not {text!r}{other_digits(text)}")
        try:
            return kind(text)
        except ValueError:   # (argparse said "invalid float value: '0,5'", with no word of the decimal point)
            meant = number_meant(text, whole=kind is int)
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}{meant}") from None

    read.__name__ = kind.__name__   # argparse names it in "invalid int value: 'x'"
    return read


def _words(line: str, *, windows: bool = os.name == "nt") -> list[str]:
    """The magic line's words, split as a shell splits them (quotes group words); on Windows a backslash is a
    path's separator, not an escape: `%gptoss browse C:\\Users\\me\\docs` lost every one of them."""
    return list(_lexer(_uncommented(line, windows=windows), windows=windows))


def _as_written(line: str, *, windows: bool = os.name == "nt") -> list[str]:
    """The magic line's words as typed, quotes kept, one for each of `_words`: a hint that quotes a text back gives it
    as written (`instructions=Say "hi" to me` was answered `'Say hi to me'`, the quotes lost)."""
    text = _uncommented(line, windows=windows)
    lexer, pieces, start = _lexer(text, windows=windows), [], 0
    for _ in lexer:
        end = lexer.instream.tell()   # (just past the word and the one space that ended it)
        pieces.append(text[start:end].strip())
        start = end
    return pieces


def _curly_quoted(line: str, words: list[str], magic: str) -> None:
    """Refuse a value of `line` that starts with a curly quote outside straight quotes (`--effort “high”`, pasted from a
    web page or typed in a word processor): a shell's splitting reads it as letters of the value, so '“high”' was no
    effort and `config instructions=“Be brief”` gave the model the quotes. A file or folder of that name is kept."""
    for piece in _as_written(line):
        key, equals, value = ("", "", piece) if _CURLY.match(piece) else piece.partition("=")
        value = value if equals else piece
        if not _CURLY.match(value) or os.path.exists(os.path.expanduser(piece)):
            continue
        prog = magic if magic == "%%gptoss" else _line_parser()._command(words).prog
        bare = _CURLY.sub("", value)
        whole = _CURLY.fullmatch(value[-1]) and bare and not _CURLY.search(value[1:-1])   # `“high”`, not `“Be`
        instead = f"{key}{equals}{shlex.quote(bare)}" if whole else 'the text in straight quotes, " or \''
        raise UsageError(f"{prog}: {piece} is in curly quotes ({value[0]}), which the magic reads as letters, not "
                         f"quotes: write {instead} (see {prog} --help)")


_CURLY = re.compile("[“”„‟«»‘’‚‛]")   # quotes word processors and web pages write, which no shell reads as quotes


def _lexer(text: str, *, windows: bool) -> shlex.shlex:
    """A shell's splitting of `text` into words; on Windows without backslash escapes."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    if windows:
        lexer.escape = ""
    return lexer


def _unsplit(error: ValueError) -> str:
    """What to write instead, for shlex's words of a line it cannot split ("No closing quotation")."""
    if str(error) == "No closing quotation":
        return ("a quote (\" or ') is not closed: close it (a word holding a \" goes inside ' quotes, and the other "
                "way round)")
    if str(error) == "No escaped character":
        return "the line ends with a backslash (\\): remove it, or write \\\\ for the character itself"
    return str(error)


def _spaced_path(words: list[str]) -> str:
    """The longest run of two or more words that, joined by spaces, names a file or folder ("" when none): a path with
    a space, unquoted, was split into words (`%gptoss browse ~/My Papers` said "no such file or folder: ~/My")."""
    for size in range(min(len(words), 32), 1, -1):
        for start in range(len(words) - size + 1):
            path = " ".join(words[start:start + size])
            if os.path.exists(os.path.expanduser(path)):
                return path
    return ""


def _uncommented(line: str, *, windows: bool) -> str:
    """`line` up to a `#` that starts a word outside quotes, as a shell reads a comment: `%gptoss load tiny  # note`
    took the note as arguments. A `#` inside a word (`instructions=#1`) or quotes is kept."""
    quote, escaped = "", False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and not windows and quote != "'":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _negative_ablate(words: list[str]) -> list[str]:
    """`--ablate -1:3` as `--ablate=-1:3`: argparse takes a value that starts with '-' for an option."""
    out: list[str] = []
    for word in words:
        if out and out[-1] == "--ablate" and word[:1] == "-" and word[1:2].isdigit():
            out[-1] = f"--ablate={word}"
        else:
            out.append(word)
    return out


def _defaults() -> str:
    """The settings a model starts with, as `config` writes them, for the help of `config` and of a cell (neither
    said them: `%%gptoss --help` left the reader to guess what an option left out means)."""
    start = Settings()
    values = {shown_key(name): getattr(start, name) for name in Settings.names()}
    given = " ".join(f"{key}={_written(value)}" for key, value in values.items() if value is not None)
    unset = ", ".join(key for key, value in values.items() if value is None)
    return f"{given}; {unset} unset (the model's own, or none)"


def _written(value: Any) -> str:
    """A setting's value as `config` takes it: on or off, 120 (not 120.0)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell_parser() -> _Parser:
    about = ("Ask the loaded gpt-oss model; the cell body is the prompt ({name} inserts a variable's value, {{name}} "
             "writes {name} itself).", "An option left out takes the setting `%gptoss config` sets (`%gptoss status` "
             f"shows them; at first {_defaults()}).")
    p = _Parser(prog="%%gptoss", description="\n".join(textwrap.fill(part, 78) for part in about),
                epilog=_CELL_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--effort", "--reasoning", "-e", dest="effort", choices=EFFORTS, help="reasoning effort for this cell")
    p.add_argument("--approve", "--approval", "-a", dest="approval", choices=APPROVALS,
                   help="tool calls: run them (auto), ask first (ask), or never run them")
    p.add_argument("--tools", type=_tool_list, help="comma list: python, browser and/or names of functions in your namespace; none for no tools")
    p.add_argument("--new", action="store_true", help="start a new conversation with this cell")
    p.add_argument("-o", "--output", dest="output", metavar="NAME", help="also keep the Reply in this variable")
    p.add_argument("--routing", "-r", action="store_true", help="record expert routing of every token")
    p.add_argument("--ablate", metavar="L:E,...", action="append", help="disable experts E of layers L for this turn "
                   "(e.g. 1:3,2:5; -1:3 = the last layer; *:0-3 = experts 0 to 3 of every layer; repeat it to add more)")
    # the numbers are read by Settings, as `%gptoss config` reads them (argparse's int() took `٣`, which config refused)
    p.add_argument("--max-tokens", dest="max_new_tokens", metavar="N", help="max new tokens per model call")
    p.add_argument("--temperature", "-t", metavar="T", help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", dest="top_p", metavar="P", help="nucleus sampling: keep the likeliest tokens "
                   "up to this probability (0 < P <= 1)")
    p.add_argument("--seed", metavar="S", help="seed for reproducible sampling")
    p.add_argument("--timeout", metavar="SECONDS", help="tool call timeout for this cell")
    p.add_argument("--json", dest="response_format", metavar="SCHEMA_VAR",
                   help="answer in the JSON schema held by this variable (pydantic model, dataclass or dict)")
    p.add_argument("--constrain", action="store_true", help="with --json: constrain decoding to the schema")
    p.add_argument("--text", action="store_true", help="plain text view instead of the chat widget")
    return p


def _line_parser() -> _Parser:
    p = _Parser(prog="%gptoss", description="Manage the gpt-oss model and conversation of this kernel. "
                "Ask it with a %%gptoss cell (%%gptoss --help).", epilog=_LINE_EXAMPLE,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    def command(name: str, text: str, example: str) -> _Parser:
        """A command whose help ends with an `example` line, kept whole (the description wrapped as argparse would)."""
        return sub.add_parser(name, help=text.replace("%", "%%"),   # (help= is %-formatted)
                              description=textwrap.fill(text, 78), epilog=f"example:\n  %gptoss {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    command("help", "show this help and the %%gptoss options", "help")
    load = command("load", "load a checkpoint into this kernel: tiny (default), a folder, or a hub id",
                   "load openai/gpt-oss-20b --device cuda")
    load.add_argument("model", nargs="?", default="tiny", type=_given,
                      help="tiny (the default), a checkpoint folder, or a hub id such as openai/gpt-oss-20b")
    place = load.add_mutually_exclusive_group()   # a device map places the weights itself: --device was ignored
    place.add_argument("--device", type=_given, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    place.add_argument("--device-map", dest="device_map", type=_given, help="transformers device map, e.g. auto")
    load.add_argument("--dtype", type=_given,
                      help="float32, bfloat16 ... (default: float32 on a CPU where it fits in memory, else the "
                           "checkpoint's)")
    load.add_argument("--dequantize", action="store_true", help="load MXFP4 experts dequantized (in --dtype) even where kernels run")
    connect = command("connect", "use an OpenAI-compatible server (vLLM, llama.cpp, Ollama)",
                      "connect http://127.0.0.1:8000 --api-key-env OPENAI_API_KEY")
    connect.add_argument("url", type=_given, help="the server's address, e.g. http://127.0.0.1:8000")
    connect.add_argument("--model", type=_given, help="the served model's name (default: the server's only model)")
    connect.add_argument("--api-key-env", dest="api_key_env", metavar="VAR", type=_variable_name,
                         help="environment variable holding the API key")
    connect.add_argument("--timeout", type=_number(float), metavar="SECONDS",
                         help="the longest the server may keep a request waiting: connecting, then each next text it "
                              "streams (keep-alives do not count; default 120)")
    connect.add_argument("--retries", type=_number(int), metavar="N",
                         help="times a connection error or a busy server is retried (0 to 10; default 2)")
    trust = connect.add_mutually_exclusive_group()
    trust.add_argument("--ca-bundle", dest="verify", metavar="PATH", type=_given,
                       help="trust an https server whose certificate (self-signed) or CA this PEM file holds")
    trust.add_argument("--insecure", dest="verify", action="store_false",
                       help="do not check the https server's certificate (anyone on the way can pose as it)")
    use = command("use", "drive a Session object you made in Python from %%gptoss cells",
                  "use s  (after s = Session.load('tiny') in Python)")
    use.add_argument("variable", type=_given, help="the name of a variable holding a gptoss_lab.Session")
    command("unload", "free the model's memory (settings and documents are kept for the next model)", "unload")
    command("status", "model, settings and conversation length", "status")
    command("reset", "forget the conversation (a new chat)", "reset")
    command("regenerate", "ask the last question again for a new answer (sampled: with greedy decoding, gpt-oss-tiny's "
            "default, the answer repeats; set a temperature)", "regenerate  (after %gptoss config temperature=0.7)")
    history = command("history", "the conversation so far", "history --export")
    history.add_argument("--export", action="store_true", help="as raw Harmony text")
    config = command("config", "change settings: effort=high approve=auto timeout=60 max_tokens=512 tools=python,f "
                               "temperature=0.7 threads=1 guard=off (let the model write malformed Harmony) ...; "
                               "KEY=default sets one back (seed=default); before a model is loaded, kept for the next one",
                     "config effort=high approve=auto timeout=60")
    config.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                        help=f"KEY is one of {', '.join(shown_keys(_CONFIG_EXTRA))} (none given: the "
                             f"settings are shown). At first {_defaults()}; threads=default (OMP_NUM_THREADS, else "
                             "all physical cores but one)")
    command("routing", "show the last reply's expert routing", "routing  (after a %%gptoss --routing cell)")
    browse = command("browse", "documents the browser tool reads: a folder, files, or a search backend",
                     "browse ~/papers  (then ask in a %%gptoss --tools browser cell)")
    browse.add_argument("source", nargs="+", type=_given,
                        help="folders, files or globs; or one backend: searxng:URL, exa, youcom")
    browse.add_argument("--api-key-env", metavar="VAR", type=_variable_name,
                        help="environment variable holding the exa/youcom API key (default EXA_API_KEY / YDC_API_KEY)")
    doctor = command("doctor", "will this model fit here? parameters, memory, kernels, longest context",
                     "doctor openai/gpt-oss-120b")
    doctor.add_argument("model", nargs="?", type=_given,
                        help="hub id, folder or config (default: the model loaded in this kernel, or tiny when "
                        "none is; connected to a server, name the model)")
    doctor.add_argument("--device", type=_given, help="cpu, cuda, cuda:1 ... to size it on (default: cuda when available)")
    doctor.add_argument("--memory", metavar="SIZE", type=_memory,
                        help="the memory of the machine to size it for, like '80 GB' or '16 GiB' (default: what is "
                             "free here)")
    doctor.add_argument("--mxfp4-kernels", dest="mxfp4_kernels", choices=("yes", "no"),
                        help="whether that machine runs transformers' MXFP4 kernels (default: what this one does)")
    return p


def _options_below(line: str, cell: str) -> None:
    """Refuse a cell whose first line below `%%gptoss` is made of its options (`--effort high`): it was asked as the
    question, and the turn ran without them."""
    first = cell.strip().split("\n", 1)[0].strip()
    try:
        words = _words(first) if first.startswith("-") else []
        if not words or {"-h", "--help"} & set(words):   # (argparse would print the help)
            return
        _cell_parser().parse_args(_negative_ablate(words))
    except (ValueError, UsageError):   # a question that starts with a dash ("-1 is less than 0?")
        return
    raise UsageError(f"%%gptoss: the cell's first line ({first}) is options of %%gptoss: write them on its line, the "
                     f"question below (%%gptoss {' '.join(filter(None, (line.strip(), first)))})")


def usage(*, cell_first: bool = False) -> str:
    """The full usage of both magics, as `%gptoss help` prints it; `%%gptoss --help` (`cell_first`) starts with the
    cell's options it asked for (they came last, after a hundred lines of commands)."""
    line, cell = _line_parser(), _cell_parser()
    parts = [line.format_help()]
    for action in line._subparsers._group_actions:  # type: ignore[union-attr]
        for name, parser in action.choices.items():
            if name != "help" and parser._actions[1:]:
                parts.append(parser.format_help())
    parts.insert(0 if cell_first else len(parts), cell.format_help())
    return "\n".join(parts)


def _line_commands() -> dict[str, argparse.ArgumentParser]:
    """The `%gptoss` commands by name, each with its parser."""
    return _line_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def help_cells(lines: list[str]) -> list[str]:
    """An IPython input transformer: a `%%gptoss` cell with nothing below its magic line gets a blank body, so the
    magic itself answers (its help, or what to write) where IPython refused the empty body with its own message
    ("did you mean the line magic %gptoss?", of which `%gptoss -e high` is no command); a `%gptoss` line ending with
    `?` reaches the magic (`_asked_on_the_line`)."""
    if lines and re.match(r"%%gptoss(?:\s|$)", lines[0]) and not "".join(lines[1:]).strip():
        return [lines[0].rstrip("\n") + "\n", "\n"]
    if (lines and lines[0].lstrip().startswith("%%")   # a cell magic's body is its text (a question to the model)
            or not any(_ENDS_ASKING.fullmatch(line.rstrip("\n")) for line in lines)):   # (every cell comes here)
        return lines
    from IPython.core.inputtransformer2 import make_tokens_by_line

    # only a line that starts a statement: one inside a string or brackets is the user's text (as for IPython's own ?)
    starts = {tokens[0].start[0] - 1 for tokens in make_tokens_by_line(lines) if tokens}
    return [_asked_on_the_line(line) if row in starts else line for row, line in enumerate(lines)]


_ENDS_ASKING = re.compile(r"(\s*)%gptoss\s+([^\s?].*?)\s*(\?\??)\s*")   # `%gptoss load?`, `%gptoss History of Rome?`


def _asked_on_the_line(line: str) -> str:
    """`line` as the magic's call where it is a `%gptoss` line ending with `?` or `??`, which IPython takes for a help
    request on its last name (`%gptoss load?` showed IPython's own `%load` magic, `%gptoss History of Rome?` looked
    for an object `Rome`): a command's name alone asks its help, other words are the magic's as written."""
    asked = _ENDS_ASKING.fullmatch(line.rstrip("\n"))
    if asked is None:
        return line
    indent, words, marks = asked.groups()
    words = f"{words} --help" if words in _line_commands() else words + marks
    return f"{indent}get_ipython().run_line_magic('gptoss', {words!r})\n"


help_cells.has_side_effects = True  # type: ignore[attr-defined]  # kept out of IPython's completeness check: a
# terminal would otherwise run `%%gptoss -e high` at its first Enter, before the question is written


def interpolate(text: str, namespace: dict[str, Any]) -> str:
    """Replace `{name}`, `{name.attr}`, `{name[0]}`, `{name['key']}` with values from the namespace;
    `{{name}}` writes `{name}` itself; other braces (JSON, code) are left alone. An undefined name is
    a UsageError naming it, so a typo never reaches the model silently."""

    def value(match: re.Match[str]) -> str:
        if match.group(2) is None:
            return "{" + match.group(1) + "}"
        try:
            return str(_lookup(match.group(2), namespace))
        except Exception as err:  # a lookup's error, or a property's or __str__'s own (a lazy object's OSError)
            why = error_message(err)  # one line, whatever the object's error says (or its unreadable message)
            why = why if len(why) <= 300 else why[:299] + "…"
            raise UsageError(f"%%gptoss: {{{match.group(2)}}} cannot be filled in ({type(err).__name__}: {why}); "
                             f"write {{{{{match.group(2)}}}}} for the text itself") from None

    return _FIELD.sub(value, text)


def _lookup(field: str, namespace: dict[str, Any]) -> Any:
    """The value of `name(.attr|[index])*`: indexes are ints, quoted strings or bare words."""
    written = re.match(r"[^\W\d]\w*", field).group()  # type: ignore[union-attr]
    name = _identifier(written)  # as Python reads it: `ｘ` is x
    if name not in namespace:
        raise KeyError(f"no variable named {name!r}")
    value = namespace[name]
    for attr, index in re.findall(r"\.(\w+)|\[([^\[\]]+)\]", field[len(written):]):
        value = getattr(value, _identifier(attr)) if attr else value[_key(index.strip())]
    return value


def _identifier(name: str) -> str:
    """A name as Python code would spell it (identifiers are NFKC-normalised when code is compiled)."""
    return unicodedata.normalize("NFKC", name)


def _key(text: str) -> int | str:
    """An index as written: an integer, a quoted string, or else the bare word itself."""
    if re.fullmatch(r"-?\d+", text, re.ASCII):
        return int(text)
    if text[:1] not in ("'", '"'):
        return text
    try:
        key = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        key = None
    if not isinstance(key, str):
        raise ValueError(f"[{text}] is not an integer, a quoted string or a bare word")
    return key


@magics_class
class GptossMagics(Magics):
    """`%gptoss COMMAND` manages the model and session; `%%gptoss [options]` asks it."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.session: Any = None
        self._unloaded: Any = None  # the session `%gptoss unload` let go of: the next model takes its settings
        # the session of the conversation a `load` or `connect` left behind (unloaded), which `%gptoss history` shows
        # until the next answer (a bare `%gptoss load` dropped it unseen, also one `unload` said it still showed)
        self._left: Any = None
        # the last reply a cell (or its regenerate) kept, with the cell's --text and -o NAME: `%gptoss regenerate` asks
        # it again in that view and puts the answer in that variable, if it is still the session's last reply
        self._asked: tuple[Any, bool, str | None] | None = None
        self.gptoss.__func__.__doc__ = usage()  # `%gptoss?` and `%%gptoss?` show the whole usage

    @line_cell_magic
    def gptoss(self, line: str, cell: str | None = None) -> Any:
        """%gptoss COMMAND ... ; %%gptoss [options] prompt (replaced by the full usage at load time)."""
        try:   # (the lab's own imports, seconds in a new kernel, included)
            with _stopped_says(line.split()[0] if cell is None and line.split() else ""):
                return self._run(line, cell)
        except UsageError as err:
            raise UsageError(_said(str(err), line)) from None

    def _run(self, line: str, cell: str | None) -> Any:
        """What the magic does with its line (and cell); its UsageErrors are shown with the keys of `line` hidden."""
        self._let_go_unloaded()
        magic = "%gptoss" if cell is None else "%%gptoss"
        try:
            words = _words(line)
        except ValueError as err:   # shlex's "No closing quotation", named %gptoss in a %%gptoss cell too
            raise UsageError(f"{magic}: {_unsplit(err)}") from None
        _curly_quoted(line, words, magic)
        named = words[1] if cell is None and len(words) > 1 and words[0] in ("-h", "--help") else ""
        if named in _line_commands().keys() - {"help"}:
            words = [words[1], "--help"]   # `%gptoss -h load`: load's own help, as `%gptoss load -h` gives it
        elif (words[:1] if cell is None else words) and {"-h", "--help"} & set(words if cell is not None else words[:1]):
            print(usage(cell_first=cell is not None))  # the whole usage: both magics, every command and option
            return None
        try:
            if cell is None:
                return self._command(_line_parser().parse_args(words or ["status"]), _as_written(line))
            opts = _cell_parser().parse_args(_negative_ablate(words))
            _options_below(line, cell)
            return self._ask(opts, cell)
        except _HelpShown:
            return None
        except UsageError as err:
            spaced = _spaced_path(words[1:]) if cell is None else ""
            if not spaced:
                raise
            raise UsageError(f"{err}; a path with spaces goes in quotes: \"{spaced}\"") from None

    # ------------------------------------------------------------ %%gptoss

    def _ask(self, opts: argparse.Namespace, cell: str) -> None:
        if opts.output is not None:
            opts.output = self._check_output_name(opts.output)
        prompt = interpolate(cell.strip(), self.shell.user_ns)
        if not prompt.strip():  # a {name} holding "" or spaces empties it too (the session said "the prompt is empty")
            if cell.strip():
                raise UsageError("%%gptoss: the question is empty once its {name} fields are filled in: "
                                 "check the variables it names")
            raise UsageError("%%gptoss: the cell is empty; write your question below the magic line "
                             "(%%gptoss --help for the options).")
        response_format = None
        if opts.constrain and opts.response_format is None:   # refused before a model loads for it (seconds)
            raise UsageError("%%gptoss: --constrain needs a response format to constrain the answer to: --json SCHEMA, "
                             "the name of a variable holding it")
        if opts.response_format is not None:
            if opts.response_format not in self.shell.user_ns:
                how = ("" if opts.response_format.isidentifier() else ": it takes the name of a variable holding the "
                       "schema (schema = {...} in a cell above, then --json schema)")
                raise UsageError(f"%%gptoss --json: no variable named {opts.response_format!r}{how}")
            response_format = self.shell.user_ns[opts.response_format]
            if response_format is None:
                raise UsageError(f"%%gptoss --json: {opts.response_format} is None, not a schema "
                                 "(a pydantic model, dataclass, TypedDict or JSON-schema dict)")
            from .structured import ResponseFormat

            try:   # checked before a model loads for it, and said with the option and name that were written
                response_format = ResponseFormat.from_user(response_format)
            except (TypeError, ValueError) as err:
                raise UsageError(f"%%gptoss --json {opts.response_format}: {err}") from None
        intervene = None
        if opts.ablate is not None:
            from .routing.interventions import parse_ablate

            intervene = _one_line(parse_ablate, ",".join(opts.ablate), said_by="%%gptoss")
        from .session import Session, _Unloaded

        # the settings the turn takes: the model's, or those the bundled one will take (`%gptoss config` before it)
        holder = next((h for h in (self.session, self._unloaded) if h is not None), None)
        holder = holder if holder is not None else Session(_Unloaded("no model"))
        overrides = {k: getattr(opts, k) for k in ("effort", "approval", "tools", "max_new_tokens", "temperature",
                                                   "top_p", "seed", "timeout")}
        try:  # said with the option's name: "--max-tokens must be ...", not the setting's "max_new_tokens"
            holder.settings.replace(**overrides)
        except SettingsError as err:
            setting, _, rest = str(err).partition(" ")
            option = next((a.option_strings[0] for a in _cell_parser()._actions if a.dest == setting), setting)
            raise UsageError(f"%%gptoss: {option} {rest} (see %%gptoss --help)") from None
        if self.session is None:   # tools the bundled model would refuse (a browser without documents), as values,
            _one_line(holder.check, tools=opts.tools, said_by="%%gptoss")   # refused before it loads (seconds)
        session = self._session()
        options = {"routing": opts.routing, "response_format": response_format, "constrain": opts.constrain,
                   "intervene": intervene, **overrides}
        view = _make_view(text=opts.text, session=session, keep=lambda r: self._keep(r, opts.output, opts.text))
        # --new: the conversation is forgotten only once the question is accepted (a refused one forgets nothing)
        reply = _answered(session, lambda: _one_line(session.ask, prompt, view=view, new=opts.new, said_by="%%gptoss",
                                                     **options),
                          "%%gptoss stopped (Ctrl-C) before its turn began: nothing was asked, and the conversation is "
                          "as it was")
        self._keep(reply, opts.output, opts.text)

    def _check_output_name(self, name: str) -> str:
        """`-o NAME` as the variable code reads, if it is a name that hides nothing the kernel or the lab relies on."""
        import builtins

        from .session import Session

        if not name.isidentifier() or keyword.iskeyword(_identifier(name)):
            raise UsageError(f"%%gptoss -o: {name!r} is not a variable name")
        name = _identifier(name)
        owned = name in self.shell.user_ns_hidden or _IPYTHON_NAME.fullmatch(name)
        if owned or (name.startswith("__") and name.endswith("__")):
            raise UsageError(f"%%gptoss -o: {name} belongs to IPython; choose another name")
        if hasattr(builtins, name):
            raise UsageError(f"%%gptoss -o: {name} would hide Python's builtin {name}; choose another name")
        if isinstance(self.shell.user_ns.get(name), Session):
            raise UsageError(f"%%gptoss -o: {name} holds your Session; choose another name")
        return name

    def _keep(self, reply: Any, name: str | None = None, text: bool = False) -> None:
        self.shell.user_ns["_gptoss"] = reply  # like `_`: the last reply, for code in the next cell
        if name:
            self.shell.user_ns[name] = reply
        self._asked = reply, text, name
        self._left = None

    def _session(self) -> Any:
        if self.session is None:
            from .session import Session

            say("No model loaded: using the bundled gpt-oss-tiny (a toy for learning; "
                f"`%gptoss load openai/gpt-oss-20b` on a GPU for the real thing).{_new_conversation(self._unloaded)}")
            with ctrl_c_says("%%gptoss stopped (Ctrl-C) while it loaded gpt-oss-tiny: nothing was loaded, and nothing "
                             "was asked"):
                self.session = _keep_settings(_one_line(Session.load, "tiny"), self._unloaded)
        return self.session

    def _let_go_unloaded(self) -> None:
        """A session unloaded from Python (`s.unload()` after `%gptoss use s`) counts as no model, as after
        `%gptoss unload`: status still named its model as loaded, doctor refused to size it, unload "unloaded" it."""
        from .session import _Unloaded

        if self.session is not None and isinstance(self.session.engine, _Unloaded):
            self.session, self._unloaded = None, self.session

    def _leave(self, old: Any) -> str:
        """What a load or connect says of the conversation of `old`, the session it replaced, which `%gptoss history`
        shows until the next answer: its model's memory is freed (as it was by letting go of it), but where it is a
        Session of the user's own (`%gptoss use s`), which stays theirs as it is."""
        self._left = old if old is not None and old.replies else None
        if self._left is not None and not any(value is old for value in self.shell.user_ns.values()):
            try:
                _one_line(old.unload)
            except UsageError:   # (a turn of it running on another thread: it is let go of, as before)
                self._left = None
        return _new_conversation(self._left, shown=" (`%gptoss history` shows that conversation until your next "
                                                   "question)")

    def _settings_from(self) -> Any:
        """The session whose settings and documents a newly loaded model takes over."""
        return self.session if self.session is not None else self._unloaded

    # ------------------------------------------------------------ %gptoss COMMAND

    def _command(self, opts: argparse.Namespace, written: list[str]) -> Any:
        """Run a line command; `written` is its line's words as typed, quotes kept."""
        from .session import Session

        command = opts.command
        _not_from_model_code(opts)
        if command == "help":
            print(usage())
        elif command == "load":
            options = {k: getattr(opts, k) for k in ("device", "dtype", "device_map", "dequantize") if getattr(opts, k)}
            old = self._settings_from()
            self.session = _keep_settings(_one_line(_load, opts.model, said_by="%gptoss load", **options), old)
            say(f"Loaded {visible(self.session.engine.name)}.{self._leave(old)}")
        elif command == "connect":
            api_key = _env_key(opts.api_key_env)
            given = {k: getattr(opts, k) for k in ("timeout", "retries", "verify") if getattr(opts, k) is not None}
            session = _one_line(Session.connect, opts.url, model=opts.model, api_key=api_key, said_by="%gptoss connect",
                                 **given)
            old = self._settings_from()
            self.session = _keep_settings(session, old)
            # the engine's URL (a user:password@ taken out), and the names the server chose
            say(f"Connected to {visible(self.session.engine.url)} ({visible(self.session.engine.name)})."
                f"{self._leave(old)}")
        elif command == "use":
            session = self.shell.user_ns.get(_identifier(opts.variable))   # `ｓ` is s, as code reads it
            if not isinstance(session, Session):
                raise UsageError(self._not_a_session(opts.variable))
            pending = self._unloaded if self.session is None else None   # `%gptoss browse` given before any model
            if session.browser is None and pending is not None and pending.browser is not None:
                session.browser = pending.browser
            self.session = session
            self._status()
        elif command == "unload":
            self._unload()
        elif command == "reset":
            for session in (self.session, self._unloaded):   # an unloaded model's conversation is shown until then
                if session is not None:   # (a turn running on another thread refuses it, in one line)
                    _one_line(session.reset, said_by="%gptoss reset")
            self._left = None
            say("Conversation cleared: the next %%gptoss cell starts a new chat.")
        elif command == "regenerate":
            self._regenerate()
        elif command == "config":
            self._config(opts.settings, written[len(written) - len(opts.settings):])
        elif command == "history":
            self._history(opts.export)
        elif command == "routing":
            return self._last_routing()
        elif command == "browse":
            self._browse(opts.source, opts.api_key_env)
        elif command == "doctor":
            model = opts.model or (self.session.engine if self.session is not None else "tiny")
            kernels = None if opts.mxfp4_kernels is None else opts.mxfp4_kernels == "yes"
            return _one_line(_doctor, model, opts.device, opts.memory, kernels, said_by="%gptoss doctor")
        else:
            self._status()
        return None

    def _config(self, pairs: list[str], written: list[str]) -> None:
        """`config KEY=VALUE ...`: change the settings, then show them; `config` alone only shows them (it changes and
        makes nothing: the python tool's code may run it)."""
        if not pairs:
            self._status()
            return
        try:
            changes = parse_assignments(pairs, extra=_CONFIG_EXTRA, typed=written)
        except SettingsError as err:
            raise UsageError(f"%gptoss config: {err}") from None
        given = "threads" in changes
        threads = _threads(changes.pop("threads")) if given else None   # None: `threads=default`
        try:  # a bad value changes nothing; it is named as the user wrote it ("approve", not "approval")
            self._kept().configure(**changes)
        except SettingsError as err:
            setting, _, rest = str(err).partition(" ")
            back = f" ({shown_key(setting)}=default sets it back)" if changes.get(setting) == "" else ""   # `seed=`
            raise UsageError(f"%gptoss config: {shown_key(setting)} {rest}{back}") from None
        if given:
            from .engines.checkpoint import import_held
            from .engines.local import use_threads

            import_held("torch")
            count = use_threads(threads)
        self._status()
        if given:
            say(f"torch threads: {count} " + ("(kept by models loaded later)" if threads is not None else
                                             "(the default again: OMP_NUM_THREADS, else all physical cores but one)"))

    def _kept(self) -> Any:
        """The session `config` and `browse` change: the loaded one or, with no model, one that keeps the settings
        and documents for the next model (they loaded gpt-oss-tiny first: a wait, and memory, before the user's
        `%gptoss load openai/gpt-oss-20b`)."""
        if self.session is not None:
            return self.session
        if self._unloaded is None:
            from .session import Session, _Unloaded

            self._unloaded = Session(_Unloaded("no model"))
        return self._unloaded

    def _not_a_session(self, name: str) -> str:
        """What `%gptoss use NAME` says where NAME holds no Session: what it holds, and the variables that hold one."""
        from .session import Session

        held = self.shell.user_ns.get(_identifier(name))
        kind = type(held).__name__
        why = (f"it holds {'an' if kind[:1] in 'aeiouAEIOU' else 'a'} {kind}" if _identifier(name) in self.shell.user_ns
               else "no variable has that name")
        sessions = sorted(k for k, v in self.shell.user_ns.items() if isinstance(v, Session) and not k.startswith("_"))
        return (f"%gptoss use: {name!r} is not a gptoss_lab.Session: {why}" +
                (f"; Sessions here: {', '.join(sessions)}" if sessions else
                 "; make one first (s = Session.load('tiny'), then %gptoss use s)"))

    def _unload(self) -> None:
        if self.session is None:
            say("No model loaded: there is nothing to unload.")
            return
        import psutil

        process = psutil.Process()
        before = process.memory_info().rss
        session = self.session
        _one_line(session.unload)  # refused (a turn running on another thread): the lab keeps it, still loaded
        self.session, self._unloaded = None, session
        after = process.memory_info().rss
        kept = (" in a new conversation (`%gptoss history` still shows this one)" if session.replies else "")
        say(f"Unloaded {visible(session.engine.name)}: this kernel uses {before / 2**20:,.0f} MB of memory "
            f"before, {after / 2**20:,.0f} MB now. The next %%gptoss cell loads gpt-oss-tiny "
            f"(or {_load_again(session)}), with your settings{kept}.")

    def _regenerate(self) -> None:
        if self.session is None and self._unloaded is not None and self._unloaded.replies:
            raise UsageError("%gptoss regenerate: the model was unloaded; `%gptoss history` shows its conversation, "
                             "and a model loaded now starts a new one")
        if self.session is None or not self.session.replies:
            raise UsageError("%gptoss regenerate: there is no answer to regenerate yet")
        reply, text, name = self._asked or (None, False, None)
        if self.session.replies[-1] is not reply:  # asked from Python (s.ask) or in another session since: not that
            text, name = False, None              # cell's question, so its -o variable keeps its answer
        keep = functools.partial(self._keep, name=name, text=text)   # the cell's -o name follows the new answer
        view = _make_view(text=text, session=self.session, keep=keep)
        keep(_answered(self.session, lambda: _one_line(self.session.regenerate, view=view, said_by="%gptoss regenerate"),
                       "%gptoss regenerate stopped (Ctrl-C) before its turn began: the earlier answer is kept"))

    def _history(self, export: bool) -> None:
        session = self.session if self.session is not None else self._unloaded   # an unloaded model's stays readable
        left = self._left if session is None or not session.replies else None   # the one a load left, until an answer
        # (--export with no conversation printed the system prompt alone, where the history said there was none)
        if (session is None or not (session.history if export else session.replies)) and left is None:
            say("No conversation yet: ask with a %%gptoss cell.")
            return
        if export and left is not None:   # it said "No conversation yet" where `%gptoss history` showed that one
            session = left
        if export:   # a setting the next turn would refuse (a function deleted since) is one line, as that turn's is
            from . import harmony

            ids = _one_line(session.prompt_ids, said_by="%gptoss history --export")
            print(visible(harmony.decode(ids)))
            if spelled := harmony.spelled_specials(ids):  # text that reads as format: an injection must not pass for it
                say(f"Note: {spelled} of the special tokens above {'is' if spelled == 1 else 'are'} text spelling one "
                    "(typed, or printed by a tool), which the model reads as plain text, not as the format's token.")
            return
        from IPython.display import display

        from .widgets.transcript import Transcript

        if left is not None:
            say(f"The conversation with {visible(left.engine.name)}, before the model changed (the model now loaded "
                "starts its own at your next question):")
            session = left
        session.check_conversation()   # as the turn left it: a thread the model's code left running rewrote it since
        for reply in session.replies:
            display(Transcript.from_reply(reply))

    def _browse(self, sources: list[str], api_key_env: str | None) -> None:
        from .tools.browser import Browser, BrowserError

        try:
            browser = Browser.from_sources(sources, api_key_env=api_key_env)
        except BrowserError as err:
            raise UsageError(f"%gptoss browse: {err}") from None
        self._kept().browser = browser
        say(f"The browser reads {browser.describe()}; ask with `%%gptoss --tools browser` "
            "(or `%gptoss config tools=python,browser`).")

    def _status(self) -> None:
        if self.session is None:   # with the settings kept for the next model, or those it starts with
            held = self._unloaded
            kept = (f" The next model starts with {_described(held.settings if held else Settings())}"
                    f"{_reads(held) if held else ''}.")
            say(f"No model loaded (the first %%gptoss cell loads gpt-oss-tiny). Use {_load_again(held)}; "
                f"`%gptoss help` lists everything.{kept}")
            return
        allowed = self.session.always_allowed   # also under approve=auto: a cell's --approve ask does not ask them
        always = (f" | always allowed: {visible(', '.join(allowed))} (`%gptoss config approve=ask` asks again)"
                  if allowed else "")
        url = getattr(self.session.engine, "url", None)   # a server's (RemoteEngine): where the turns are made
        served = f" (served at {visible(url)})" if isinstance(url, str) else ""
        say(f"model: {visible(self.session.engine.name)}{served} | {_described(self.session.settings)}{always} | "
            f"turns: {len(self.session.replies)}{_reads(self.session)}")

    def _last_routing(self) -> Any:
        session = self._settings_from()   # after `%gptoss unload`, its conversation's last reply (as history shows)
        replies = session.replies if session is not None else []
        if not replies or replies[-1].routing is None:
            from .engines.hooks import model_of

            if self.session is None:   # was an AttributeError traceback
                raise UsageError("%gptoss routing: no reply has routing and no model is loaded: `%gptoss load tiny`, "
                                 "then run a cell with `%%gptoss --routing`.")
            try:   # a model outside this kernel records none: asking again with --routing would not help
                model_of(self.session.engine)
                why = ""
            except ValueError as err:
                why = str(err)
            raise UsageError(f"%gptoss routing: the last reply has no routing: {why}" if why else
                             "%gptoss routing: the last reply has no routing; run a cell with `%%gptoss --routing`.")
        return replies[-1].routing


def _not_from_model_code(opts: argparse.Namespace) -> None:
    """A one-line UsageError for a command that changes the lab's model, session or settings (`_CHANGES`) run by the
    python tool's code (`get_ipython().run_line_magic`): `%gptoss use s` switched the user's cells to another session,
    `unload` dropped the loaded one though the session refused it. Reading ones (status, `config` alone) are its to run."""
    from .tools.containment import from_model_code

    if _CHANGES[opts.command](opts) and from_model_code():
        raise UsageError(f"%gptoss {opts.command}: the python tool's code cannot change the lab's model, session or "
                         "settings: they are the user's, changed between turns")


def _stopped_says(command: str) -> contextlib.AbstractContextManager[None]:
    """Ctrl-C (the kernel's interrupt) in a long command (`_STOPPED`) is one line saying what stopped and that nothing
    changed, as `route` says it, not a traceback through torch, transformers or a document parser."""
    if command not in _STOPPED:
        return contextlib.nullcontext()
    return ctrl_c_says(f"%gptoss {command} stopped (Ctrl-C): {_STOPPED[command]}")


def _answered(session: Any, ask: Callable[[], Any], says: str) -> Any:
    """The reply `ask()` (a turn of `session`) made. Ctrl-C before its turn began is the one line `says`; one while the
    turn was ending (the chat view waits for its front end), which the session holds until the reply is made, then
    delivers so that a script stops, keeps that reply: the cell is ending anyway, and the reply was lost with a
    traceback."""
    last = session.replies[-1] if session.replies else None
    try:
        with ctrl_c_says(says):
            return ask()
    except KeyboardInterrupt:
        if not session.replies or session.replies[-1] is last:
            raise
        return session.replies[-1]


def _load(model: str, **options: Any) -> Any:
    """Session.load for `%gptoss load`: a load that would work with another device or dtype (a device this machine
    lacks) is refused naming the command to type instead, the user's other options kept (`%gptoss load tiny --device
    cpu --dtype bfloat16`), not the Python call."""
    from .engines.checkpoint import LoadError, load_command
    from .session import Session

    try:
        return Session.load(model, **options)
    except LoadError as err:
        if not err.instead:
            raise
        lines = []
        for change in err.instead:   # a device given drops a device map: a load takes one of them
            kept = {k: v for k, v in options.items() if not (k == "device_map" and "device" in change)}
            lines.append(load_command(model, {**kept, **change}))
        raise LoadError(f"{err.reason}: use {' or '.join(lines)}") from None


def _doctor(model: Any, device: str | None, memory: str | None, kernels: bool | None) -> Any:
    """doctor() for `%gptoss doctor`: a device this machine lacks is refused naming the command to type instead (and
    --memory, to size it for another machine), not the Python call."""
    from .engines.checkpoint import LoadError
    from .engines.doctor import doctor

    try:
        return doctor(model, device=device, memory=memory, mxfp4_kernels=kernels)
    except LoadError as err:
        if not err.instead:
            raise
        name = shlex.quote(str(model)) if isinstance(model, str) else ""   # (a loaded engine: the line names none)
        lines = [" ".join(filter(None, ("%gptoss doctor", name, f"--device {change['device']}")))
                 for change in err.instead]
        raise LoadError(f"{err.reason}: use {' or '.join(lines)}, or give --memory (like --memory '80 GB') to size it "
                        "for another machine") from None


def _memory(text: str) -> str:
    """`%gptoss doctor --memory SIZE`, read as doctor reads it ("80 GB", "16 GiB"): refused in the magic's own line."""
    from .engines.doctor import memory_bytes

    try:
        memory_bytes(_given(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _one_line(call: Any, *args: Any, said_by: str = "", **kw: Any) -> Any:
    """Run `call`; a user-facing error (engine, settings, tools, prompt) becomes a one-line UsageError, starting with
    the command `said_by` names (`%gptoss load: checkpoint folder not found: …`) unless it names one already."""
    from .engines.base import EngineError
    from .session import TurnError

    try:
        return call(*args, **kw)
    except (EngineError, TurnError, SettingsError) as err:
        text = str(err)
        raise UsageError(f"{said_by}: {text}" if said_by and not text.startswith("%") else text) from None


def _load_again(unloaded: Any) -> str:
    """The `%gptoss load` line that loads the model the `unloaded` session held again, its options kept, where it is
    known (not for one made in Python), the `%gptoss connect` line of a server's model, else the command's form."""
    engine = getattr(unloaded, "engine", None)
    if isinstance(url := getattr(engine, "url", None), str):
        return f"`%gptoss connect {visible(url)}` for {visible(engine.name)} again"
    loaded_from = getattr(engine, "loaded_from", None)
    if loaded_from is None:
        return "`%gptoss load NAME`"
    from .engines.checkpoint import load_command

    return f"`{visible(load_command(*loaded_from))}` for {visible(unloaded.engine.name)} again"


def _reads(session: Any) -> str:
    """What `%gptoss browse` gave the session's browser, for `%gptoss status` ("" when nothing)."""
    return f" | browser: {visible(session.browser.describe())}" if session.browser is not None else ""


def _threads(value: Any) -> int | None:
    """`config threads=N`: torch's CPU threads for the model (1 is best when Jupyter and a browser share 2 cores);
    None for `threads=default`."""
    if value is DEFAULT:
        return None
    try:
        threads = int(value)
        if not (value.isascii() and 1 <= threads <= 1024):  # torch overflows past 2**31; `٣` as the settings refuse it
            raise ValueError
    except ValueError:
        raise UsageError(f"%gptoss config: threads must be a whole number from 1 to 1024, not {value!r}"
                         f"{number_meant(value, whole=True)}") from None
    return threads


def _described(settings: Any) -> str:
    """The settings `%gptoss status` and `config` show: the usual ones, and the others once set."""
    tools = settings.tools if isinstance(settings.tools, str) else ",".join(
        getattr(t, "name", getattr(t, "__name__", str(t))) for t in settings.tools)
    chosen = [f" | {name}: {value}" for name in ("temperature", "top_p", "seed", "date")  # shown once set
              if (value := getattr(settings, name)) is not None]
    default = Settings()
    chosen += [f" | {name}: {getattr(settings, name)}" for name in ("max_tool_calls", "max_skipped")  # once changed
               if getattr(settings, name) != getattr(default, name)]
    if not settings.guard:
        chosen.append(" | guard: off")
    if settings.instructions:
        chosen.append(f" | instructions: {counted(len(settings.instructions), 'character')}")
    return (f"effort: {settings.effort} | approve: {settings.approval} | tools: {tools} | "
            f"timeout: {settings.timeout:g} s | max tokens: {settings.max_new_tokens}{''.join(chosen)}")


def _new_conversation(old: Any, shown: str = "") -> str:
    """What a load or connect says when it leaves a conversation behind (the new model starts its own), and where it
    is `shown`."""
    if old is None or not old.replies:
        return ""
    turns = len(old.replies)
    return f" A new conversation starts: the {turns} earlier turn{'s are' if turns > 1 else ' is'} not carried over{shown}."


def _keep_settings(new: Any, old: Any) -> Any:
    """A new model keeps the user's settings and documents (not the conversation: its KV cache belongs to the old one)."""
    if old is not None:
        new.settings = old.settings
        new.browser = old.browser
    return new


def _env_key(var: str | None) -> str | None:
    """The API key in the environment variable `var`; UsageError for one not set or empty (no key would be sent, and
    the server's refusal would say to pass one)."""
    if var is None:
        return None
    import os

    if var not in os.environ:
        raise UsageError(f"%gptoss connect: the environment variable {variable_named(var)} is not set")
    if not os.environ[var].strip():
        raise UsageError(f"%gptoss connect: the environment variable {variable_named(var)} is empty: put the API key "
                         "in it")
    return os.environ[var]


def _make_view(*, text: bool, session: Any = None, keep: Any = None) -> Any:
    """The chat widget in a notebook front end (shown when the turn starts, so a refused question leaves no
    empty view); the streaming text view in a terminal or on request. The widget's Regenerate and New chat
    act on `session`; `keep` gets each Reply."""
    from IPython import get_ipython

    shell = get_ipython()
    if text or shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        from .widgets.text import TextView

        return TextView()
    from .widgets.chat import ChatView

    return ChatView().connect(session, keep=keep)
