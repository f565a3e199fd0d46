"""`python -m gptoss_lab.tiny`: the tiny model's commands, each run as `python -m gptoss_lab.tiny.COMMAND` (Python said
only "'gptoss_lab.tiny' is a package and cannot be directly executed")."""
import ast
import shlex
import sys
from pathlib import Path

from . import command

COMMANDS = ("train", "evaluate", "quantize", "llamacpp", "tokenizer", "random_model")
PROG = "python -m gptoss_lab.tiny"


def _summary(name: str) -> str:
    """The first line of the command's module docstring, read without importing it (train imports torch: seconds)."""
    source = (Path(__file__).parent / f"{name}.py").read_text(encoding="utf-8")
    return (ast.get_docstring(ast.parse(source)) or "").split("\n")[0]


def usage() -> str:
    """The commands, each with what it does, and an example."""
    lines = [f"usage: {PROG}.COMMAND [-h] ...", "", "commands:"]
    lines += [f"  {name:<13} {_summary(name)}" for name in COMMANDS]
    return "\n".join([*lines, "", f"example: {PROG}.evaluate --n 10 --show-failures"])


def main(argv: list[str] | None = None) -> None:
    """List the commands; a command given as a word (`... tiny train --quick`) is answered with the line to run."""
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["-h"], ["--help"]):
        print(usage())
        return
    if args[0] in COMMANDS:
        why = f"a command is part of the module's name: {PROG}.{args[0]} {shlex.join(args[1:])}".rstrip()
    else:
        from ..settings import nearest   # only here: the settings' pydantic took ~0.2 s

        near = nearest(args[0], COMMANDS)
        why = f"no command {args[0]!r}" + (f": did you mean {near!r}?" if near else f": {PROG}.COMMAND, one of "
                                                                               f"{', '.join(COMMANDS)}")
    sys.stderr.write(f"{usage().split(chr(10))[0]}\n{PROG}: error: {why}\n")
    raise SystemExit(2)


if __name__ == "__main__":
    command(main)
