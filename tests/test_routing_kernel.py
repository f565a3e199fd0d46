"""The routing lab in a real kernel (jupyter_client): `--ablate` mistakes and turns that record nothing."""
from __future__ import annotations

import pytest
from test_kernel import kernel, run  # noqa: F401  (the kernel fixture; tests/ is on sys.path)

pytestmark = pytest.mark.kernel

SETUP = """
%load_ext gptoss_lab
from gptoss_lab import Session, ReplayEngine
s = Session(ReplayEngine('<|channel|>final<|message|>Hi there.<|return|>', delay=0.0))
%gptoss use s
"""


def test_bad_ablate_values_are_one_line_usage_errors(kernel) -> None:
    out, content = run(kernel[1], SETUP)
    assert content["status"] == "ok", out
    for value, message in (("garbage", "--ablate takes LAYER:EXPERT pairs separated by commas (e.g. 1:3,2:5 or "
                                       "*:0-3), not 'garbage'"),
                           ("=,,", "--ablate needs LAYER:EXPERT pairs, e.g. --ablate 1:3,2:5"),
                           ("=1:-2", "--ablate takes LAYER:EXPERT pairs separated by commas (e.g. 1:3,2:5 or "
                                     "*:0-3), not '1:-2'"),
                           ("1:3-1", "--ablate: the expert range 3-1 is empty"),
                           ("*:0-99999999999", "--ablate: there is no expert 99999999999 (expert ids go up to "
                                               "32767 at most)")):
        separator = "" if value.startswith("=") else " "
        out, content = run(kernel[1], f"%%gptoss --text --ablate{separator}{value}\nhi")
        assert (content["ename"], content["evalue"]) == ("UsageError", message), out


def test_a_turn_that_recorded_no_routing_does_not_promise_a_picture(kernel) -> None:
    out, content = run(kernel[1], SETUP)
    assert content["status"] == "ok", out
    out, content = run(kernel[1], "%%gptoss --routing\nhi")  # the chat view, with the routing view under it
    assert content["status"] == "ok", out
    assert "Expert routing: no tokens recorded yet" in out and "picture follows" not in out
    out, _ = run(kernel[1], "print(_gptoss.routing, _gptoss.errors)")
    assert out.strip() == ("None ['no expert routing recorded: this needs a gpt-oss model in this kernel, and replay "
                           "(ReplayEngine) has none: load one with Session.load(...)']")


def test_ablate_the_last_layer_with_a_negative_index(kernel) -> None:
    """`--ablate -1:7` (argparse's "expected one argument" before) disables expert 7 of the last layer, its
    busiest on gpt-oss-tiny."""
    out, content = run(kernel[1], "%load_ext gptoss_lab\n%gptoss load tiny", timeout=180)
    assert content["status"] == "ok", out
    count = "r = _gptoss.routing\nprint(len(r) > 0, r.layers, int((r.experts[:, -1] == 7).sum()))"
    for ablate in ("", "--ablate -1:7"):
        out, content = run(kernel[1], f"%%gptoss --text --routing --new --max-tokens 8 {ablate}\nWhat is 2+2?",
                           timeout=180)
        assert content["status"] == "ok", out
        out, _ = run(kernel[1], count)
        shown, layers, chosen = out.split()
        assert (shown, layers) == ("True", "4") and (int(chosen) > 0) == (not ablate), out
