"""`%gptoss config` and `%gptoss browse` before any model: they keep the settings and documents for the next model
and load nothing (they loaded gpt-oss-tiny first, a wait and its memory before the user's own `%gptoss load`)."""
from __future__ import annotations

import pytest

from test_kernel import kernel, run  # noqa: F401  (the kernel fixture; tests/ is on sys.path)

pytestmark = pytest.mark.kernel


def test_settings_and_documents_wait_for_the_next_model(kernel, tmp_path):  # noqa: F811
    _, kc = kernel
    (tmp_path / "notes.md").write_text("# Notes\nThe harbour of Velmora opens at dawn.\n")
    run(kc, "%load_ext gptoss_lab")
    out, content = run(kc, "%gptoss routing")   # was an AttributeError traceback
    assert (content["ename"], content["evalue"]) == ("UsageError", "%gptoss routing: no reply has routing and no model "
                                                     "is loaded: `%gptoss load tiny`, then run a cell with `%%gptoss "
                                                     "--routing`."), out
    out, content = run(kc, "%%gptoss --tools browser\nWhat do my notes say?")   # refused before tiny loads (5 s)
    assert (content["ename"], content["evalue"]) == ("UsageError", "%%gptoss: the browser has no documents to read: "
                                                     "choose them with `%gptoss browse FOLDER` or "
                                                     "Session(..., browser=Browser(...))"), out
    assert "using the bundled gpt-oss-tiny" not in out and run(kc, "%gptoss status")[0].startswith("No model loaded")
    run(kc, "def get_weather(city: str) -> str:\n    'The weather in a city.'\n    return 'rain'")
    out, content = run(kc, "%%gptoss --tools python,get_wether\nWeather?")   # a misspelt function too (it loaded tiny)
    assert (content["ename"], content["evalue"]) == ("UsageError", "%%gptoss: unknown tool 'get_wether': tools are "
                                                     "python, browser, or a function defined in this kernel (did you "
                                                     "mean 'get_weather'?)"), out   # (it was named no function)
    assert "using the bundled gpt-oss-tiny" not in out and run(kc, "%gptoss status")[0].startswith("No model loaded")
    out, content = run(kc, "%gptoss config effort=high seed=3 approve=auto guard=off")
    assert content["status"] == "ok", out
    assert "bundled gpt-oss-tiny" not in out and out.startswith("No model loaded"), out
    said = " ".join(out.split())   # in lines JupyterLab's output area does not break inside a word
    assert "The next model starts with effort: high | approve: auto | tools: python" in said and "seed: 3" in said, out
    assert max(len(line) for line in out.splitlines()) <= 68, out
    assert "guard: off" in out, out

    # a bad value and a browser with no documents are still refused at once, in one line
    out, content = run(kc, "%gptoss config effort=bogus")
    assert content["ename"] == "UsageError" and "effort" in content["evalue"] and "\n" not in content["evalue"]
    out, content = run(kc, "%gptoss config tools=python,browser")
    assert content["ename"] == "UsageError" and "the browser has no documents" in content["evalue"]

    out, content = run(kc, f"%gptoss browse {tmp_path}")
    assert content["status"] == "ok" and "The browser reads 1 document" in out, out
    out, content = run(kc, "%gptoss config tools=python,browser")
    assert content["status"] == "ok" and "tools: python,browser" in out, out
    out, _ = run(kc, "%gptoss status")
    assert out.startswith("No model loaded") and "effort: high" in out, out  # still nothing loaded
    said = " ".join(out.split())   # what it reads, a setting of its own
    assert said.endswith(f" | browser: 1 document in {tmp_path} (1 Markdown; 2 lines)."), out

    # the model loaded next takes them over
    out, content = run(kc, "%gptoss load tiny\n%gptoss status", timeout=120)
    assert content["status"] == "ok", out
    said = " ".join(out.split())
    assert "model: gpt-oss-tiny | effort: high | approve: auto | tools: python,browser" in said and "seed: 3" in said
    assert "guard: off" in said and said.endswith(f" | browser: 1 document in {tmp_path} (1 Markdown; 2 lines)"), out
    out, _ = run(kc, "import gptoss_lab.magics as m, IPython\n"
                     "s = IPython.get_ipython().magics_manager.registry['GptossMagics'].session\n"
                     "print(type(s.browser).__name__, s.browser.describe())")
    assert out.startswith("Browser 1 document"), out
