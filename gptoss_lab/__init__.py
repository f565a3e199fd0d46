"""gptoss_lab: a Jupyter-native lab for OpenAI's open-weight gpt-oss models.

`%load_ext gptoss_lab` registers the `%gptoss` / `%%gptoss` magics. Importing the package is
instant: torch and transformers load only when a model does.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

__version__ = "0.1.0"
__all__ = ["Session", "Reply", "ReplayEngine", "ToolCall", "tool", "doctor", "load_ipython_extension"]

_LAZY = {
    "Session": ("session", "Session"),
    "Reply": ("events", "Reply"),
    "ReplayEngine": ("engines.replay", "ReplayEngine"),
    "ToolCall": ("events", "ToolCall"),
    "tool": ("tools.functions", "tool"),
    "doctor": ("engines.doctor", "doctor"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'gptoss_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    """What `gptoss_lab.<Tab>` and `dir(gptoss_lab)` offer: the public names, also those not loaded yet, and the
    modules loaded (`routing`); not `Any` and `annotations`, which were offered in their place."""
    return sorted({*(name for name, value in globals().items() if name.startswith("_") or isinstance(value, ModuleType)),
                   *__all__})


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext gptoss_lab`: register the magics."""
    from .magics import GptossMagics, help_cells

    magics = GptossMagics(ipython)
    loaded = ipython.magics_manager.registry.get(GptossMagics.__name__)
    if loaded is not None:  # %reload_ext: keep the loaded model, the conversation and the last cell's view and -o name
        magics.session, magics._asked = loaded.session, getattr(loaded, "_asked", None)
        magics._unloaded, magics._left = getattr(loaded, "_unloaded", None), getattr(loaded, "_left", None)
    ipython.register_magics(magics)
    if help_cells not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(help_cells)
