"""The routing record's entry points given a number, a bool or None where they take a list or a path: one line
naming the argument and what it takes (they were Python's "object of type 'int' has no len()" and the like)."""
from __future__ import annotations

import numpy as np
import pytest

from gptoss_lab.routing import Recorder, Routing, load


def _record() -> Routing:
    return Routing([1, 2], np.zeros((2, 2, 2), np.int16), np.full((2, 2, 2), 0.5), ["text", "text"], num_experts=4)


_TOKENS, _LABELS = "^tokens are a list of token ids, one per token, not ", "^labels is a list of one label per token, not "
_PATH, _WIDE = r"^path is a record folder's path \(text or a pathlib\.Path\), not ", np.zeros((1, 2, 2))


@pytest.mark.parametrize("make, message", [
    (lambda: Routing(5, _WIDE, _WIDE), _TOKENS + r"5 \(int\)$"),
    (lambda: Routing("12", np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), _TOKENS + r"'12' \(str\)$"),
    (lambda: _record().append(7, _WIDE, _WIDE), _TOKENS + r"7 \(int\)$"),
    (lambda: Recorder().add(5, _WIDE, _WIDE), _TOKENS + r"5 \(int\)$"),
    (lambda: Routing([1], _WIDE, _WIDE, 5), _LABELS + r"5 \(int\)$"),
    (lambda: _record().relabel(None), _LABELS + "None$"),
    (lambda: _record().select(True),
     "^select takes a slice, a boolean mask or token positions, not True: a mask has one True or False per token$"),
    (lambda: load(8), _PATH + r"8 \(int\)$"),
    (lambda: _record().save(None), _PATH + "None$"),
])
def test_a_wrong_kind_of_argument_is_one_line_naming_it(make, message):
    with pytest.raises(TypeError, match=message):
        make()
