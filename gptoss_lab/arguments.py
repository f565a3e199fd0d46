"""The lab's one argparse parser: the magics, the tiny model's commands and the benchmarks read their words with it."""
from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """argparse taking options written whole: its prefix matching read `--dev cpu` as `--device cpu` and `--con` as
    `--constrain`, so a saved notebook's line changed meaning (or failed) once a command gained an option of that
    start; a shortened or mistyped option names the one meant (`--dev`: did you mean '--device'?)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def error(self, message: str) -> NoReturn:
        from .settings import UNRECOGNIZED, nearest   # only here: the settings' pydantic took ~0.2 s of every --help

        message = plain(message)
        if (typed := UNRECOGNIZED.search(message)) is not None:
            near = nearest(typed[1].split("=")[0], (o for a in self._actions for o in a.option_strings))
            message += f": did you mean {near!r}?" if near else ""
        super().error(message)


_VALUE_IGNORED = re.compile(r"argument ([^\s/:]+)\S*: ignored explicit argument ('.*')")


def plain(message: str) -> str:
    """argparse's `message` in the user's words where it has its own: `--quick=yes` was "argument --quick: ignored
    explicit argument 'yes'"."""
    return _VALUE_IGNORED.sub(r"\1 takes no value, not \2: write \1 alone", message)
