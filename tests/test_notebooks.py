"""The teaching notebooks run top to bottom in a real kernel and show the reader what they promise."""
from __future__ import annotations

import ast
import builtins
import json
import re
import sys
import symtable
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter, MarkdownExporter

from gptoss_lab.tiny.evaluate import states

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# A notebook's load of tiny shows its progress, as `%gptoss load` does (04, 06, 07 loaded for up to 20 s showing nothing)
LOADING = [r"Loading gpt-oss-tiny on cpu \(", r"\rLoading weights: 100%"]

# What a reader must see in each executed notebook (regular expressions searched in the text of its
# outputs), and whether the notebook is slow.
EXPECTED: dict[str, tuple[list[str], bool]] = {
    "01_quickstart.ipynb": ([r"Loaded gpt-oss-tiny", r"\b444\b", r"answer: .*\b37\.67\b", r"tool call: python ran",
                             r"low effort: +\d+ words", r"model: gpt-oss-tiny"], False),
    "02_harmony_format.ipynb": (
        [re.escape(s) for s in ("<|start|>system<|message|>", "MessageStart", "The mean of `data` is **6.0**.",
                                "with the old analysis: 249 tokens, without: 197 tokens", "The last value is 10.",
                                # "takes away the whole pink analysis slice and the yellow tool one"
                                "sent for the second question: 0 analysis tokens, 0 tool tokens")],
        False,
    ),
    "03_tools_in_the_kernel.ipynb": (
        [re.escape(s) for s in ("total = 17.5", "[python: skipped]\n    Not run: approval is set to never\n",
                                "python -> Not run: the user's settings do not allow tool calls (approval: never).",
                                "[reviewer] refused", "[python: skipped]\n    Skipped by Reviewer\n",   # not "by you"
                                "Timed out after 1 s", "NameError: name 'mean' is not defined",
                                "Error: ValidationError: currency", "17.50 € is **$20.30**.",
                                "Basket(items=3, total=17.5, most_expensive='coffee')")],
        False,
    ),
    "04_expert_routing.ipynb": ([*LOADING, r"Routing\(\d[\d,]* tokens × 4 layers × top-2 of 8 experts",
                                 r"entropy of the load per layer",
                                 # the capital question is compared alone (--new), not with the arithmetic turn's tokens
                                 r"Routing\(\d[\d,]* tokens × 4 layers × top-2 of 8 experts; user \d+, analysis \d+, final \d+\)",
                                 r"Jensen–Shannon divergence of expert load per layer"], False),
    "05_train_gpt_oss_tiny.ipynb": ([# what a run's model depends on: the reader's CPU kernels tell another run apart
                                     r"QUICK run: 16 conversations of seed 0 \(torch's CPU kernels: [A-Z0-9 ]+\)",
                                     r"'final_loss'", r"bundled gpt-oss-tiny",
                                     # scoring both models shows how far it is (8 conversations in a full run)
                                     r"Scoring gptoss-lab-notebook-model-\w+: 100%", r"Scoring tiny: 100%",
                                     # the routing pictures' text, checked by the notebook's asserts: layer 1 is
                                     # busy on experts 0 and 1, layer 2 splits the system message from the rest
                                     r"bundled, layer 1: experts 0 and 1 take \d+% or more of every kind's picks",
                                     r"bundled, layer 2: expert 0 takes \d+% of the system message's picks"], True),
    "06_mxfp4_and_memory.ipynb": ([*LOADING, r"relative RMS error +1\d\.\d\d%", r"MXFP4: 37 \* 12 = 444",
                                   r"tokens route differently", r"total with MXFP4: +65\.2 GB", r"gpt-oss-120b fits on cuda",
                                   r"116\.83 B total"], False),
    "07_what_do_experts_do.ipynb": ([*LOADING, r"Corpus\(120 texts, \d[\d,]* tokens × 4 layers × top-2 of 8 experts",
                                     r"digit expert: layer \d, expert \d", r"ExpertCard\(layer \d, expert \d",
                                     r"final-channel expert: layer \d, expert \d", r"tokens of the turn changed route",
                                     r"right answers - baseline: \d/8, digit expert off: \d/8, control: .+: \d/8",
                                     r"switching the digit expert off breaks the answers; the control does not"], False),
    "08_browsing.ipynb": ([r"4 documents in .+/kestrel_docs \(1 text, 1 Markdown, 1 PDF, 1 HTML; \d+ lines\)",
                           r"\[1\] Greenhouse operating manual \(manuals/greenhouse\.pdf\)\n\*\*viewing lines \[2 - 8\] of 8\*\*",
                           r"【1†L4】 -> manuals/greenhouse\.pdf L4: Keep the humidity at 68 percent",
                           r"Sources:\n  【1†L4】 Greenhouse operating manual \(manuals/greenhouse\.pdf\), L4:",
                           r"every citation resolves to the lines it quotes: True"], False),
}

# What a reader must NOT see: the prose says otherwise.
FORBIDDEN: dict[str, list[str]] = {
    "02_harmony_format.ipynb": [r"\bNaN\b"],                      # a message with no channel has none, not "NaN"
    "03_tools_in_the_kernel.ipynb": [r"did not stop when told"],   # "past it the code is stopped"
    "06_mxfp4_and_memory.ipynb": [r"\(layer 0: [1-9]"],            # "Layer 0 never changes"
    "07_what_do_experts_do.ipynb": [r"RuntimeWarning"],
}


def _run(nb: nbformat.NotebookNode, **options: object) -> None:
    """Execute `nb` in a new python3 kernel, as nbclient does; the kernel is then killed, not asked to end: asked, one
    that had imported torch spent 2.5 s in Python's exit (collecting over torch's objects) before nbclient returned."""
    NotebookClient(nb, timeout=300, kernel_name="python3", shutdown_kernel="immediate", **options).execute()


def _output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the executed notebook shows as text: streamed text joined as a front end shows it,
    then the plain, Markdown and HTML forms of results."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.extend("\n" + out.data.get(k, "") + "\n" for k in ("text/plain", "text/markdown", "text/html"))
    return "".join(parts)


def _frozen_progress_bars(nb: nbformat.NotebookNode) -> list[str]:
    """Progress-bar widgets (tqdm.auto) in the outputs: saved, their only static form is the bar as it was
    first displayed (0 %), which GitHub, nbconvert and a closed-and-reopened notebook show."""
    return [out.data["text/plain"] for cell in nb.cells for out in cell.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
            and re.search(r"\d+%\|", out.data.get("text/plain", ""))]


def _execute(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[nbformat.NotebookNode, float]:
    monkeypatch.setenv("GPTOSS_LAB_QUICK", "1")  # notebook 05 trains for seconds, not minutes
    temporary = tmp_path / "temp dir"   # what a notebook writes (05: a 58 MB model) is the test's, not /tmp's; with a
    temporary.mkdir()                     # space, as a Windows user name puts in it (08's `%gptoss browse` split there)
    monkeypatch.setenv("TMPDIR", str(temporary))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    start = time.perf_counter()
    _run(nb, resources={"metadata": {"path": str(NOTEBOOKS)}})  # raises CellExecutionError on the first cell that fails
    return nb, time.perf_counter() - start


@pytest.mark.kernel
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if slow else [])
                                  for n, (_, slow) in EXPECTED.items()])
def test_notebook_runs_and_shows_its_results(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    nb, seconds = _execute(name, monkeypatch, tmp_path)
    text = _output_text(nb)
    for pattern in EXPECTED[name][0]:
        assert re.search(pattern, text), f"{name}: the reader never sees {pattern!r}"
    for pattern in FORBIDDEN.get(name, []):
        assert not re.search(pattern, text), f"{name}: the reader sees {pattern!r}, which the prose contradicts"
    frozen = _frozen_progress_bars(nb)
    assert not frozen, f"{name}: the saved notebook shows progress bars frozen as first displayed: {frozen}"
    if name == "01_quickstart.ipynb":  # saved and exported without widgets, the turns are still there
        markdown, _ = MarkdownExporter().from_notebook_node(nb)
        assert "gptoss_lab chat view" not in markdown and "37 * 12 = 444." in markdown
        page, _ = HTMLExporter().from_notebook_node(nb)  # not the chat widget's empty place
        assert "37 * 12 = 444." in re.sub(r"<script.*?</script>", "", page, flags=re.S)
    if name == "04_expert_routing.ipynb":  # every routing view's picture is in the HTML export, not the widget's place
        pictures = [o.data["image/png"] for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        page, _ = HTMLExporter().from_notebook_node(nb)   # offline, a widget's scripts (from a CDN) draw nothing
        assert len(pictures) >= 6 and '<script type="application/vnd.jupyter.widget-view+json">' not in page
        assert all(f'src="data:image/png;base64,{picture.strip()}' in page for picture in pictures)
    if name == "03_tools_in_the_kernel.ipynb":  # --text turns read as text, not one token per line
        markdown, _ = MarkdownExporter().from_notebook_node(nb)
        assert markdown.count("Your items cost **17.5** in total.") >= 2, "the answer is not readable in the output"
    print(f"{name}: {seconds:.1f} s")


@pytest.mark.kernel
def test_notebook_05_trains_into_a_folder_of_its_own_each_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                                               ) -> None:
    """Every run of notebook 05 wrote to one fixed folder, $TMPDIR/gptoss-lab-notebook-model: two runs at once (two
    kernels, or the tests beside a reader's run) rewrote each other's checkpoint and loss log, and a run then read back
    and pictured the other's model as "yours". Each run now trains into a new, empty folder that it names."""
    monkeypatch.setenv("GPTOSS_LAB_QUICK", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))   # the kernels' temporary folders: nothing is left behind
    first = next(c for c in nbformat.read(NOTEBOOKS / "05_train_gpt_oss_tiny.ipynb", as_version=4).cells
                 if c.cell_type == "code")
    folders = []
    for _ in range(2):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(first.source)])
        _run(nb)
        printed = "".join(o.get("text", "") for o in nb.cells[0].outputs)
        folders.append(Path(re.search(r"the model goes to (\S+)", printed).group(1)))
    assert folders[0] != folders[1] and all(f.is_dir() and not any(f.iterdir()) for f in folders), folders


def test_every_notebook_is_tested_and_committed_without_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(EXPECTED)
    for name in names:
        nb = json.loads((NOTEBOOKS / name).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{name} has saved outputs"


def test_every_relative_link_in_the_readme_docs_and_notebooks_resolves() -> None:
    root = NOTEBOOKS.parent
    pages = {path: path.read_text() for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        pages[path] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    broken = [f"{path.relative_to(root)}: {target}" for path, text in pages.items()
              for target in re.findall(r"\]\(([^)\s]+)\)", text)
              if not re.match(r"[a-z]+:", target) and not (path.parent / target.split("#")[0]).exists()]
    assert not broken, f"links to nothing: {broken}"



def _free_names(table: symtable.SymbolTable) -> set[str]:
    """Names a snippet reads but neither defines nor imports, in it and in the functions it defines."""
    free = {s.get_name() for s in table.get_symbols()
            if s.is_referenced() and not (s.is_assigned() or s.is_imported() or s.is_parameter())
            and (table.get_type() == "module" or s.is_global())}
    return free.union(*(_free_names(child) for child in table.get_children()))


def test_the_python_examples_in_the_readme_and_docs_import_and_name_only_what_exists() -> None:
    """A reader pastes an example into a fresh kernel: docs/remote.md used `os` without importing it, and names that a
    module does not export (`from gptoss_lab.tools.browser import DEMO_FACTS`) fail the same way, at the first line."""
    root = NOTEBOOKS.parent
    problems = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S):
            code = "\n".join(line for line in block.splitlines() if not line.startswith("%"))   # IPython magics
            tree = ast.parse(code)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    try:
                        exec(compile(ast.Module([node], []), str(path), "exec"), {})
                    except ImportError as e:
                        problems.append(f"{path.name}: {ast.unparse(node)}: {e}")
            undefined = _free_names(symtable.symtable(code, str(path), "exec")) - set(dir(builtins))
            problems += [f"{path.name}: {name} is used but never defined or imported" for name in sorted(undefined)]
    assert not problems, problems

@pytest.mark.kernel
def test_long_work_shows_plain_progress_on_stdout_that_a_saved_notebook_keeps(tmp_path: Path) -> None:
    """Loading tiny and reading a folder of documents (like routing a corpus and training) show their progress as a text
    bar on stdout: a tqdm widget was saved frozen at 0 % (the only output of `%gptoss browse` on 20+ files), and stderr bars
    are painted red in JupyterLab, their closing newline an empty red stripe under "Loaded gpt-oss-tiny."."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(25):
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\nPlace {i} has {i * 7} houses.\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in (
        "%load_ext gptoss_lab\n%gptoss load tiny",
        f"%gptoss browse {docs}",
    )])
    _run(nb)
    outputs = [out for cell in nb.cells for out in cell.outputs]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})], outputs
    assert not [o for o in outputs if o.get("name") == "stderr"], [o.text for o in outputs if o.get("name") == "stderr"]
    stdout = [re.sub(r".*\r", "", "".join(o.text for o in cell.outputs if o.get("name") == "stdout"))
              for cell in nb.cells]
    assert "Loading weights: 100%" in stdout[0] and "Loaded gpt-oss-tiny." in stdout[0], stdout[0]
    assert "Reading documents: 100%" in stdout[1] and "The browser reads 25 documents" in stdout[1], stdout[1]


def test_progress_outside_a_terminal_is_redrawn_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten redraws a second were each kept in a notebook's output: notebook 05's training left ~570 progress lines
    in its saved HTML (a reader's review). A terminal still redraws in place as often as tqdm does."""
    import io

    from gptoss_lab.widgets import text_bar

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with text_bar(total=10) as bar:
        assert bar.mininterval == 3.0
    with text_bar(total=10, mininterval=0.5) as bar:   # a caller's own choice stays
        assert bar.mininterval == 0.5


def _readme_section(title: str) -> str:
    """The text of README.md from the heading `title` to the next heading."""
    text = (NOTEBOOKS.parent / "README.md").read_text()
    start = text.index(f"\n{title}\n")
    return re.split(r"\n#{2,3} ", text[start + len(title) + 2:])[0]


@pytest.mark.kernel
def test_the_readme_in_a_notebook_cells_run_as_written_and_answer_right() -> None:
    """A new user pastes the README's "In a notebook" cells as they are: `%gptoss load tiny   # comment` was an error
    (line magics take the comment as arguments) and "data holds my measurements" had no `data` (tiny called a weather
    function that does not exist). Only `--approve ask` becomes `auto`: nobody is there to click Run."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", _readme_section("## In a notebook"), flags=re.S)
    cells = [b.replace("--approve ask", "--approve auto") for b in blocks[:2]]
    assert cells[1].startswith("%%gptoss") and "--approve auto" in cells[1], cells
    check = ("print(repr(_gptoss.final), _gptoss.errors)\n"
             "assert f'{sum(data) / len(data):.2f}' in _gptoss.final, _gptoss.final")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [*cells, check]])
    _run(nb, allow_errors=True)
    errors = [f"{o.ename}: {o.evalue}" if o.output_type == "error" else o.text for c in nb.cells for o in c.outputs
              if o.output_type == "error" or "UsageError" in o.get("text", "")]
    assert not errors, f"the README's cells fail as written: {errors}"
    assert "Loaded gpt-oss-tiny." in "".join(o.get("text", "") for o in nb.cells[0].outputs)


def test_notebook_03_draws_the_approval_card_as_the_chat_view_shows_it() -> None:
    """Notebook 03 draws an `ask` card in text for readers without the widget: its status and question are the chat
    view's own words (it said "waiting for you"; the card says "waiting for approval"), and the box is closed."""
    from gptoss_lab.widgets.transcript import STATUS_LABEL

    cells = json.loads((NOTEBOOKS / "03_tools_in_the_kernel.ipynb").read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    card = next(block for block in re.findall(r"<pre[^>]*>(.*?)</pre>", text, flags=re.S) if "▶ Run" in block)
    assert f" {STATUS_LABEL['waiting']} ─┐" in card and "Run this code in your kernel?" in card, card
    assert len({len(line) for line in card.splitlines()}) == 1, card
    chat_js = (NOTEBOOKS.parent / "gptoss_lab" / "static" / "chat.js").read_text()
    buttons = re.findall(r"\[ ([^\]]+?) \]", card)
    assert buttons == ["▶ Run", "Always allow", "Edit", "Skip"] and all(f'"{b}"' in chat_js for b in buttons), buttons


def _theme_colour(value: str, theme: dict[str, str]) -> tuple[float, float, float, float]:
    """A CSS colour as RGBA (0-1), its `var(--name, fallback)` read from `theme` (a JupyterLab theme's variables;
    none: as nbconvert's classic HTML and GitHub show it, the fallback)."""
    from matplotlib.colors import to_rgba

    value = value.strip()
    var = re.fullmatch(r"var\((--[\w-]+)\s*(?:,\s*(.+))?\)", value)
    if var:
        return _theme_colour(theme[var.group(1)] if var.group(1) in theme else var.group(2), theme)
    rgba = re.fullmatch(r"rgba?\(([^)]*)\)", value)
    if rgba:
        r, g, b, *a = (float(part) for part in rgba.group(1).split(","))
        return r / 255, g / 255, b / 255, a[0] if a else 1.0
    return to_rgba(value)


def _contrast(ink: tuple[float, ...], paper: tuple[float, ...]) -> float:
    """WCAG contrast of `ink` (its alpha over the paper) on an opaque `paper`."""
    def luminance(rgb: tuple[float, ...]) -> float:
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    mixed = tuple(ink[3] * i + (1 - ink[3]) * p for i, p in zip(ink[:3], paper[:3]))
    light, dark = sorted((luminance(mixed), luminance(paper)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_notebook_05_draws_its_untrained_tokens_at_4_5_to_1_in_light_dark_and_saved_forms() -> None:
    """Cell 5's token view drew the context (untrained tokens) in #777: 4.48:1 on white, 4.22:1 on JupyterLab Dark's
    #111; the cell runs here on a short example and each colour it draws is read in the installed JupyterLab
    themes (on their notebook background) and without them (nbconvert, GitHub: the fallback on white)."""
    import types

    from jupyterlab.commands import get_app_dir

    from gptoss_lab import harmony

    source = next(c.source for c in nbformat.read(NOTEBOOKS / "05_train_gpt_oss_tiny.ipynb", as_version=4).cells
                  if c.cell_type == "code" and "groupby(covered)" in c.source)
    ids = harmony.encode("<|start|>user<|message|>What is 2+2?<|end|><|start|>assistant<|message|>4<|return|>")
    example = types.SimpleNamespace(ids=ids, covered=[i >= len(ids) // 2 for i in range(len(ids))])
    namespace = {"example": example, "harmony": harmony}
    exec(compile(source.replace("HTML(", "shown = ("), "notebook 05 cell 5", "exec"), namespace)
    styles = set(re.findall(r'<span style="([^"]*)"', namespace["shown"]))
    themes = Path(get_app_dir()) / "themes/@jupyterlab"
    seen = {}
    for name in ("light", "dark", None):
        css = (themes / f"theme-{name}-extension/index.css").read_text() if name else ""
        theme = dict(re.findall(r"(--jp-[\w-]+):([^;}]+)", css))
        paper = _theme_colour("var(--jp-layout-color0, white)", theme)
        for style in styles:
            rules = dict(rule.split(":", 1) for rule in style.split(";") if rule)
            ink = _theme_colour(rules.get("color", "var(--jp-content-font-color1, black)"), theme)
            back = _theme_colour(rules["background"], theme) if "background" in rules else paper
            seen[f"{name or 'no theme'}: {style}"] = round(_contrast(ink, back), 2)
    assert len(styles) == 2 and min(seen.values()) >= 4.5, seen


def test_notebook_03_asked_again_without_its_script_says_which_cell_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Running notebook 03's first `%%gptoss` cell again, without its `model_will(...)` cell, ended the turn with
    "... asked for reply 3; give the recording more replies": right, but no word of the cell to run again."""
    from IPython.core.interactiveshell import InteractiveShell

    code = [c.source for c in nbformat.read(NOTEBOOKS / "03_tools_in_the_kernel.ipynb", as_version=4).cells
            if c.cell_type == "code"]
    asked = next(i for i, source in enumerate(code) if source.startswith("%%gptoss"))
    shell = InteractiveShell.instance()
    try:
        for source in code[:asked + 1]:
            assert shell.run_cell(source).success, source
        capsys.readouterr()
        shell.run_cell(code[asked])
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace
    printed = capsys.readouterr().out
    said = "asked for reply 3; a recording plays once: run the cell that made it again, then this one"
    assert said in printed, printed


@pytest.mark.parametrize(("name", "check"), [("08_browsing.ipynb", "reply = _gptoss"),
                                             ("03_tools_in_the_kernel.ipynb", 'print("total ="'),
                                             # (it printed the answer as the tool's: "None -> I was not allowed ...")
                                             ("03_tools_in_the_kernel.ipynb", "tool_answer = session.history[-2]")])
def test_a_check_after_a_turn_run_twice_says_what_to_do(name: str, check: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Notebook 08's `%%gptoss` cell run twice (its recording plays once) said so, but the check under it then raised
    a bare `AssertionError: []` (03's: `AssertionError: ''`): the check says in one line what to run, no traceback."""
    from IPython.core.interactiveshell import InteractiveShell

    code = [c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "code"]
    checked = next(i for i, source in enumerate(code) if check in source)
    shell = InteractiveShell.instance()
    try:
        for source in code[:checked]:
            assert shell.run_cell(source).success, source
        shell.run_cell(code[checked - 1])   # the turn again: its recording is played out
        capsys.readouterr()
        shell.run_cell(code[checked])
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace
    said = ("TurnFailed: nothing to check: the turn failed (its cell says why); run it again, after the cell that "
            "made its recording for a recorded turn, then this cell")
    assert capsys.readouterr().out.strip() == said


@pytest.mark.parametrize("name", ["03_tools_in_the_kernel.ipynb", "08_browsing.ipynb"])
def test_a_recorded_notebook_run_all_twice_shows_the_same_tool_calls(name: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Run All twice in one kernel: notebook 03's second run showed `mean(...)` done under "Here it forgets to import
    `mean`", no NameError: the first run's corrected call (`from statistics import mean`) had left `mean` there."""
    from IPython.core.interactiveshell import InteractiveShell

    code = [c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "code"]
    shell = InteractiveShell.instance()
    calls = []
    try:
        for _ in range(2):
            for source in code:
                assert shell.run_cell(source).success, source
            calls.append(re.findall(r"^\[[\w.]+: (?!running|waiting)[\w ]+\]\n.*", capsys.readouterr().out, flags=re.M))
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace
    assert calls[0] and calls[0] == calls[1], calls


def test_notebook_02_asked_again_says_the_recording_is_played_out(capsys: pytest.CaptureFixture[str]) -> None:
    """Running notebook 02's last cell again printed an empty line as the answer and an export ending in the unanswered
    question: the recording had no third reply, and the turn's one-line failure was in the Reply, never shown."""
    from IPython.core.interactiveshell import InteractiveShell

    code = [c.source for c in nbformat.read(NOTEBOOKS / "02_harmony_format.ipynb", as_version=4).cells
            if c.cell_type == "code"]
    shell = InteractiveShell.instance()
    try:
        for source in code:
            assert shell.run_cell(source).success, source
        capsys.readouterr()
        shell.run_cell(code[-1])
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace
    answer = capsys.readouterr().out.splitlines()[0]
    assert "a recording plays once: run the cell that made it again" in answer, answer


def test_notebook_07_counts_an_answer_right_only_for_the_whole_result(capsys: pytest.CaptureFixture[str]) -> None:
    """Notebook 07 counted an answer right when the result's digits were anywhere in it: "56250" and "-5625" were right
    answers to a question whose result is 5625, and the digit expert's verdict was drawn from those counts."""
    import contextlib
    import types

    import numpy as np
    import pandas as pd

    source = next(c.source for c in nbformat.read(NOTEBOOKS / "07_what_do_experts_do.ipynb", as_version=4).cells
                  if c.cell_type == "code" and "control_name" in c.source)
    wrong = {"+": lambda a, b: f"The answer is {a + b}0.", "-": lambda a, b: f"{b} - {a} = {b - a}.",
             "*": lambda a, b: f"{a} * {b} = 1{a * b}."}   # the result's digits inside another number

    def ask(question: str, **_: object) -> types.SimpleNamespace:
        a, op, b = question.removeprefix("What is ").rstrip("?").split()
        return types.SimpleNamespace(final=wrong[op](int(a), int(b)))

    session = types.SimpleNamespace(ask=ask, reset=lambda: None)
    off = types.SimpleNamespace(describe=lambda: "an expert off", apply=lambda _: contextlib.nullcontext())
    namespace = {"session": session, "disable": lambda _: off, "digit_expert": off, "layer": 0, "expert": 0,
                 "r": types.SimpleNamespace(layers=2, num_experts=2), "overall": np.full((2, 2), 0.5), "pd": pd, "np": np,
                 "states": states}
    exec(compile(source, "notebook 07, the eight questions", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "right answers - baseline: 0/8, digit expert off: 0/8" in printed, printed


@pytest.mark.parametrize("name, marker, wrong", [
    ("01_quickstart.ipynb", "python says: 37 * 12", "37 * 12 = 4440."),
    ("01_quickstart.ipynb", "mean(data) =", "The mean of data is 137.67."),
    ("01_quickstart.ipynb", "\"python says:\", data[3]", "88 + 23 = 1111."),
    ("01_quickstart.ipynb", "high_answer =", "4821 - 1937 = 28840."),
    ("01_quickstart.ipynb", "2884 * 3 =", "2884 * 3 = 86520."),
    ("03_tools_in_the_kernel.ipynb", 'print("total ="', "Your items cost **117.5** in total."),
    ("03_tools_in_the_kernel.ipynb", 'print(f"--- {call.status}', "The average price is about **5.833**."),
    ("04_expert_routing.ipynb", "routing = _gptoss.routing", "The largest value in data is 188."),
    ("04_expert_routing.ipynb", "arithmetic = _gptoss.routing", "4821 - 1937 = 28840."),
    ("04_expert_routing.ipynb", "capital = _gptoss.routing", "The capital of Norway is Oslofjord."),
    ("06_mxfp4_and_memory.ipynb", "for q, right in questions", "37 * 12 = 4440. The capital of France is Paris."),
    ("08_browsing.ipynb", "resolved = all", "Keep the humidity at 168 percent 【1†L4】."),
    # another sign or a decimal part next to the result passed the whole-word check (\b)
    ("01_quickstart.ipynb", "high_answer =", "4821 - 1937 = -2884."),
    ("01_quickstart.ipynb", "python says: 37 * 12", "37 * 12 = 444.5"),
    ("04_expert_routing.ipynb", "routing = _gptoss.routing", "The largest value in data is 88.5."),
    ("08_browsing.ipynb", "resolved = all", "Keep the humidity at 6.68 percent 【1†L4】."),
    # the recorded turns of 02 and 03 showed their answers unchecked
    ("02_harmony_format.ipynb", "reply = session.ask(", "The mean of `data` is **16.0**."),
    ("02_harmony_format.ipynb", "second = session.ask(", "The last value is 510."),
    ("03_tools_in_the_kernel.ipynb", "c.input.splitlines()[-1]", "You have 13 items. I did not delete prices.csv."),
    ("03_tools_in_the_kernel.ipynb", "dollars = convert(", "17.50 € is **$120.30**."),
    ("07_what_do_experts_do.ipynb", "digit_expert.compare(", "383 + 3420 = 38030."),   # the answer "without" it
])
def test_the_checks_of_the_answers_shown_refuse_the_result_inside_another_number(name: str, marker: str,
                                                                                 wrong: str) -> None:
    """The notebooks check every answer they show, but checked it by its digits anywhere in it: "188" passed as 88,
    "4440" as 444, "117.5" as 17.5, "Oslofjord" as Oslo, a wrong answer shown as checked. A check now wants the result
    as a whole word, as the model card's evaluation scores it (evaluate.states: not -2884 nor 444.5 either)."""
    import types

    source = next(c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells
                  if c.cell_type == "code" and marker in c.source)
    quote = types.SimpleNamespace(marker="【1†L4】", url="manuals/greenhouse.pdf", start=4, end=4,
                                  text="Keep the humidity at 68 percent.")
    reply = types.SimpleNamespace(final=wrong, analysis="", routing=None, tool_calls=[], citations=[quote],
                                  raise_for_failure=lambda: None, failed="")
    model = types.SimpleNamespace(ask=lambda *_, **__: reply, reset=lambda: None)
    namespace = {"_gptoss": reply, "bf16": model, "mxfp4": model, "states": states, "data": [12, 45, 7, 88, 23, 51],
                 "low": "", "low_answer": wrong, "prices": {"apples": 3.2, "bread": 2.5, "coffee": 11.8}, "total": 17.5,
                 "session": model, "reply": reply, "Session": lambda *_, **__: model, "ReplayEngine": lambda *_: None,
                 "recording": "", "convert": lambda amount, currency: round(amount * 1.16, 2), "layer": 0, "expert": 0,
                 "disable": lambda _: types.SimpleNamespace(compare=lambda *_: types.SimpleNamespace(baseline=reply))}
    with pytest.raises(AssertionError):
        exec(compile(source, f"{name}: the cell of {marker}", "exec"), namespace)


def test_notebook_07_says_the_control_broke_answers_when_it_did(capsys: pytest.CaptureFixture[str]) -> None:
    """Notebook 07's verdict said "the control does not" break the answers whenever the control kept more of them than
    the digit expert off, also when it broke some itself (8/8 with neither off, 4/8 with the control off)."""
    import contextlib
    import types

    import numpy as np
    import pandas as pd

    source = next(c.source for c in nbformat.read(NOTEBOOKS / "07_what_do_experts_do.ipynb", as_version=4).cells
                  if c.cell_type == "code" and "control_name" in c.source)
    state = {"off": None, "asked": 0}

    def intervention(name: str) -> types.SimpleNamespace:
        def apply(_: object) -> contextlib.AbstractContextManager[None]:
            state["off"] = name
            return contextlib.nullcontext()
        return types.SimpleNamespace(describe=lambda: name, apply=apply)

    def ask(question: str, **_: object) -> types.SimpleNamespace:
        a, op, b = question.removeprefix("What is ").rstrip("?").split()
        result = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        state["asked"] += 1
        wrong = state["off"] == "digit" or (state["off"] == "control" and state["asked"] % 2)
        return types.SimpleNamespace(final=f"The answer is {result + 1 if wrong else result}.")

    session = types.SimpleNamespace(ask=ask, reset=lambda: state.update(off=None))
    namespace = {"session": session, "disable": lambda _: intervention("control"), "digit_expert": intervention("digit"),
                 "layer": 0, "expert": 0, "r": types.SimpleNamespace(layers=2, num_experts=2),
                 "overall": np.full((2, 2), 0.5), "pd": pd, "np": np, "states": states}
    exec(compile(source, "notebook 07, the eight questions", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "baseline: 8/8, digit expert off: 0/8, control: control: 4/8" in printed, printed
    assert "the control does not" not in printed, printed
