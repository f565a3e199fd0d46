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
        assert (content["ename"], content["evalue"]) == ("UsageError", f"%%gptoss: {message}"), out


def test_a_turn_that_cannot_record_routing_draws_no_routing_view_and_says_why(kernel) -> None:
    """`--routing` with a model outside the kernel (here a replay; a server alike): the answer comes with the reason,
    and no routing view is drawn (an empty one said "0 tokens × 0 layers" and, saved, "no tokens recorded yet", for
    tokens that never come); `%gptoss routing` then gives the same reason, not "run a cell with --routing"."""
    out, content = run(kernel[1], SETUP)
    assert content["status"] == "ok", out
    out, content = run(kernel[1], "%%gptoss --routing\nhi")
    assert content["status"] == "ok", out
    assert "Expert routing" not in out and "picture follows" not in out
    why = ("this needs a gpt-oss model in this kernel, and replay (ReplayEngine) has none: load one here "
           "(`%gptoss load tiny`, Session.load(...))")
    out, _ = run(kernel[1], "print(_gptoss.routing, _gptoss.errors)")
    assert out.strip() == f"None ['No expert routing recorded: {why}']"
    out, content = run(kernel[1], "%gptoss routing")
    assert (content["ename"], content["evalue"]) == ("UsageError", f"%gptoss routing: the last reply has no routing: {why}")


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
