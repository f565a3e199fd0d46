"""gpt-oss-tiny: a small GptOss the lab trains itself on synthetic Harmony data, shipped in the package."""
from pathlib import Path

CHECKPOINT = Path(__file__).parent / "checkpoint"
