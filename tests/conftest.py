"""Shared fixtures: small GptOss checkpoints the tests make themselves (real weights can't be downloaded)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_lab.tiny.random_model import make_random_checkpoint


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A random 4-layer, 8-expert top-2 GptOss checkpoint folder."""
    return make_random_checkpoint(tmp_path_factory.mktemp("random_gptoss"))
