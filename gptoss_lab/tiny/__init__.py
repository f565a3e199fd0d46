"""gpt-oss-tiny: a small GptOss the lab trains itself on synthetic Harmony data, shipped in the package."""
import argparse
from collections.abc import Callable
from pathlib import Path

CHECKPOINT = Path(__file__).parent / "checkpoint"


def number(kind: type, low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type for the tiny model's command lines: a `kind` (int or float) from `low` to `high`."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= (high if high is not None else float("inf")):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} {span}, not {text!r}")
        return value
    return parse
