"""Where the lab's guides (docs/*.md) are on this machine, for the messages and help texts that point to one: a wheel
ships them inside the package (gptoss_lab/docs, see pyproject.toml), a clone keeps them beside it (docs/)."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).parent


def guide(name: str) -> str:
    """The path of the guide `name` (e.g. remote.md) that a user can open: the installed copy, else the clone's
    ("docs/remote.md" named a file an installed package has no copy of)."""
    shipped = _PACKAGE / "docs" / name
    return str(shipped if shipped.is_file() else _PACKAGE.parent / "docs" / name)
