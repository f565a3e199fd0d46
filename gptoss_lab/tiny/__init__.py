"""gpt-oss-tiny: a small GptOss the lab trains itself on synthetic Harmony data, shipped in the package."""
import argparse
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from .. import arguments

CHECKPOINT = Path(__file__).parent / "checkpoint"
NEW_TOPICS = {  # the training data's skills, each with its weight when a turn starts a new topic (train --topics reweights)
    "arithmetic": 0.22, "kernel": 0.13, "dataframe": 0.09, "function": 0.12, "browse": 0.12, "structured": 0.05,
    "error": 0.08, "skip": 0.07, "direct": 0.07, "define": 0.05,
}


class Parser(arguments.Parser):
    """The tiny model's command lines: options written whole, a mistyped one named (`--quik`: did you mean '--quick'?),
    as the magics read theirs; `fail` ends a run whose work failed."""

    def fail(self, error: BaseException) -> NoReturn:
        """Exit with status 1 and "PROG: error: ...": the work failed, where a mistake in what was typed is a usage
        error (`error`, status 2)."""
        self.exit(1, f"{self.prog}: error: {error}\n")


def number(kind: type, low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type for the tiny model's command lines: a `kind` (int or float) from `low` to `high`, in the
    digits 0-9 as the lab's magics read numbers (int() also takes `٣`: `--conversations ٣` trained 3)."""
    def parse(text: str) -> float:
        try:
            value = kind(text) if text.isascii() else None
        except ValueError:
            value = None
        if value is None or not low <= value <= (high if high is not None else float("inf")):
            from ..settings import other_digits   # only here: the settings' pydantic took ~0.2 s of every --help

            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} {span}, not "
                                             f"{text!r}{other_digits(text)}")
        return value
    return parse


def path(text: str) -> Path:
    """An argparse type for the commands' files and folders: '' (an unset `$DIR`) is refused, where Path('') is the
    current folder (`tokenizer ""` wrote its four files there)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty value ('') names no file or folder")
    return Path(text)


def checkpoint_folder(text: str) -> Path:
    """An argparse type for a command's checkpoint folder: the word `tiny` is gpt-oss-tiny's own, as `%gptoss load
    tiny` reads it (installed, its folder is deep in site-packages: `--resume tiny` was "not found"); `./tiny` is a
    folder of that name."""
    return CHECKPOINT if text == "tiny" else path(text)


def cache_dir() -> Path:
    """The lab's folder in the user's cache (platformdirs' where installed, else `$XDG_CACHE_HOME` or ~/.cache): what
    the commands make for later runs goes there, never into the installed package, which may be read-only."""
    try:
        from platformdirs import user_cache_path
    except ImportError:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptoss_lab"
    return user_cache_path("gptoss_lab", appauthor=False)


SEED = number(int, -2**63, 2**64 - 1)   # the seeds torch.manual_seed takes: a larger one was a traceback from torch


@contextmanager
def importing(name: str) -> Iterator[None]:
    """The block of a command line's imports (`name` is the module's `__name__`): run as a command, Ctrl-C there
    ends it with one line and status 130, as Ctrl-C in its work does, not with a traceback (torch and transformers
    take seconds to import, before `main` catches anything). Imported by other code, the KeyboardInterrupt goes on."""
    try:
        yield
    except KeyboardInterrupt:
        if name != "__main__":
            raise
        sys.stderr.write("interrupted while starting: nothing was done\n")
        raise SystemExit(130) from None


def command(main: Callable[[], None]) -> None:
    """Run a command line's `main` (its `__main__` block): a reader that stops early (`… evaluate | head -1`) ends it
    quietly with status 141, as it ends other Unix commands, not with a BrokenPipeError traceback."""
    try:
        try:
            main()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # the exit's own flush writes nowhere
        raise SystemExit(141) from None


def must_be_new(out: Path) -> None:
    """A one-line ValueError unless `out` names a new or empty folder: the tiny model's commands overwrite nothing."""
    if out.name in ("", ".."):   # `--out .` in an empty folder: the whole run was done, then could not become it
        raise ValueError(f"{out} is not a new folder's name: name the folder to make, e.g. {out / 'run'}")
    if out.is_symlink() or out.exists() and not (out.is_dir() and not any(out.iterdir())):   # a link: no rename onto it
        raise ValueError(f"{out} already exists: give a new (or empty) folder, nothing there is overwritten")


@contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """A hidden sibling folder to write `out` into, which becomes `out` only when the block completes, so a
    failure or Ctrl-C halfway leaves nothing behind. `out` must be new or an empty folder (ValueError: nothing
    is overwritten); OSError, in one line, when it cannot be made, or when the finished folder cannot become `out`
    (then it is kept, and the message names it). The tiny model's commands (train, quantize) write with it."""
    must_be_new(out)
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        partial.mkdir(parents=True)
    except OSError as error:
        raise OSError(f"cannot write {out}: {error.strerror or error}") from None
    try:
        yield partial
        _usual_modes(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except OSError as error:   # the work is whole: kept (a finished 90-minute run was deleted with it), and said where
        raise OSError(f"cannot put the finished work at {out} ({error.strerror or error}; another run wrote there "
                      f"meanwhile?): it is kept whole in {partial}") from None


def _usual_modes(folder: Path) -> None:
    """What `folder` holds readable as the user's umask makes new files: transformers writes its weights owner-only
    (0600), which a server or container running as another user could not read (the shipped file is 0644)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
