"""The static fallback of a turn (what a saved or exported notebook shows) under hostile text: in the Markdown form
no piece (model Markdown, the prompt) may reach past its own place and restyle the tool cards, sources or footer
around it, and text that is not Markdown (a server's model name) stays text."""
from __future__ import annotations

import re

from markdown_it import MarkdownIt

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Citation, Delta, MessageEnd, MessageStart, TurnStart
from gptoss_lab.widgets.transcript import Transcript


def _turn(recording: str, prompt: str = "Check it.") -> Transcript:
    reply = Session(ReplayEngine(recording), namespace={}, approval="auto").ask(prompt)
    return Transcript.from_reply(reply)


def _rendered(markdown: str) -> str:
    """The Markdown form as a CommonMark front end (GitHub, nbconvert) shows it."""
    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def test_an_unclosed_fence_in_the_model_text_does_not_swallow_the_tool_card_or_footer() -> None:
    """A preamble ending in ```` ```` ```` turned the tool card that followed into its code (its head shown as
    code, the code that ran as part of the preamble); an answer ending in `~~~` did the same to the footer."""
    transcript = _turn("<|channel|>commentary<|message|>Let me check.\n\n````<|end|>"
                       "<|start|>assistant to=python<|channel|>commentary<|message|>print(6 * 7)<|call|>"
                       "<|start|>assistant<|channel|>final<|message|>It is 42.\n\n~~~<|return|>")
    shown = _rendered(transcript.to_markdown())
    assert "<strong>Tool call <code>python</code></strong>" in shown
    assert "<sub>" in shown and "&lt;sub&gt;" not in shown  # the footer is a footer, not code


def test_an_unclosed_fence_in_the_answer_does_not_swallow_the_sources() -> None:
    transcript = _turn("<|channel|>final<|message|>See 【0†L1】.\n\n```<|return|>")
    transcript.citations = [Citation("【0†L1】", 0, 1, 1, "https://a.example/", "A page", "cited line")]
    shown = _rendered(transcript.to_markdown())
    assert "<p><strong>Sources</strong></p>" in shown


def test_a_servers_model_name_in_the_footer_is_text_not_markdown() -> None:
    """The footer names the model, and a remote server chooses that name: in the Markdown form it was live Markdown,
    so a name could put a tracking image (fetched when the saved notebook is opened) and a link under every turn."""
    name = "![t](https://evil.example/pixel.png) [sign in](https://phish.example) *gpt-oss*"
    reply = Session(ReplayEngine("<|channel|>final<|message|>Hi.<|return|>", name=name), namespace={},
                    approval="auto").ask("Hello")
    shown = _rendered(Transcript.from_reply(reply).to_markdown())
    assert "<img" not in shown and "phish.example\"" not in shown and "<em>" not in shown
    assert name in shown  # written as it is
    assert "<p>Hi.</p>" in shown  # the answer itself still renders as Markdown


def test_a_prompt_with_carriage_returns_stays_inside_its_quote() -> None:
    """A prompt is often a document's text; CommonMark ends a line at a lone CR too, and a line not marked as quoted
    left the quote with its code fence, so the prompt's HTML was live in the Markdown form."""
    prompt = "```\r<img src=x onerror=alert(1)>\r```"
    reply = Session(ReplayEngine("<|channel|>final<|message|>Done.<|return|>"), namespace={},
                    approval="auto").ask(prompt)
    shown = _rendered(Transcript.from_reply(reply).to_markdown())
    assert "<img" not in shown and "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert shown.index("</blockquote>") > shown.index("onerror")  # the whole prompt is in the quote


def test_an_answer_of_many_link_starts_is_saved_at_once() -> None:
    """Link titles are left out of the Markdown form; the title's pattern scanned the rest of the line from each
    `](`, so an answer of 40,000 of them took 20 s to save, holding the kernel."""
    import time

    reply = Session(ReplayEngine("<|channel|>final<|message|>" + "](" * 40_000 + "<|return|>"), namespace={}).ask(
        "Check it.", max_new_tokens=100_000)
    t0 = time.perf_counter()
    markdown = Transcript.from_reply(reply).to_markdown()
    assert time.perf_counter() - t0 < 5 and "> **Answer:**\n>\n> ```\n> " + "](" * 40_000 in markdown  # past the budget
    # a title is still left out
    titled = _turn('<|channel|>final<|message|>See [owls](https://owls.example/a "Source 1: voles").<|return|>')
    assert "[owls](https://owls.example/a)" in titled.to_markdown() and "Source 1" not in titled.to_markdown()


def test_an_answer_of_many_image_starts_is_saved_in_one_parse() -> None:
    """The Markdown form parsed a long answer's text about ten times (alone, quoted in the whole, for its headings, its
    code, its blocks): an answer of 40,000 `![` took 17 s to save. Its inline text is now parsed once."""
    import time

    transcript = Transcript.from_events([TurnStart("Check it.", "low", "replay", "auto"), MessageStart("final", None),
                                         Delta("![" * 10_000, "final"), MessageEnd(None, None)])
    t0 = time.perf_counter()
    markdown = transcript.to_markdown()
    assert time.perf_counter() - t0 < 3 and "> **Answer:**\n>\n> ```\n> " + "![" * 10_000 + "\n" in markdown


def test_an_answer_holding_a_long_table_is_saved_in_about_one_read_of_it_with_its_rows() -> None:
    """The Markdown form parsed a long answer's blocks about ten times (its headings, whether it was inert, again for
    the link rules that changed nothing, the whole twice, its pieces, its code for citations it did not have): a table of
    26,666 rows took 8 s to save. It now takes about one CommonMark reading of the answer, and keeps every row (as code,
    past the markup budget)."""
    import gc
    import time

    rows = "".join(f"| {i} | owl |\n" for i in range(5_000))
    answer = f"| n | bird |\n|---|---|\n{rows}"
    transcript = Transcript.from_events([TurnStart("Check it.", "low", "replay", "auto"), MessageStart("final", None),
                                         Delta(answer, "final"), MessageEnd(None, None)])
    gc.disable()   # the collector's time grows with whatever else the process holds
    try:
        t0 = time.perf_counter()
        MarkdownIt("commonmark").enable("table").parse(answer)
        t1 = time.perf_counter()
        markdown = transcript.to_markdown()
        t2 = time.perf_counter()
    finally:
        gc.enable()
    assert t2 - t1 < 1.7 * (t1 - t0) and rows.replace("\n", "\n> ") in markdown


def test_an_answer_of_many_unclosed_brackets_is_saved_at_once() -> None:
    """The text and Markdown forms number citation markers outside the model's links, whose pattern scanned the rest
    of the line from each `[` or `](` that closed none: an answer of 60,000 `[` held the kernel 40 s at the turn's end
    (each form 20 s). A marker inside a link, one with brackets or parentheses in it too, is still the model's text."""
    import time

    for text in ("[" * 60_000, "[a](" * 15_000):
        reply = Session(ReplayEngine(f"<|channel|>final<|message|>{text}<|return|>"), namespace={}).ask(
            "Check it.", max_new_tokens=100_000)
        transcript = Transcript.from_reply(reply)
        t0 = time.perf_counter()
        shown = transcript.to_text()
        assert time.perf_counter() - t0 < 6 and text in shown.replace("\n    ", "")
    linked = "Owls [see [1] 【0†L1】](https://w.example/A_(b)) hunt"
    transcript = _turn(f"<|channel|>final<|message|>{linked} 【0†L1】.<|return|>")
    transcript.citations = [Citation("【0†L1】", 0, 1, 1, "https://a.example/", "A page", "cited line")]
    assert f"{linked} [1]." in transcript.to_text()


def test_an_answer_nested_past_the_parsers_limit_keeps_its_words_and_carries_nothing_live() -> None:
    """An answer quoted (or listed) 20 deep reached markdown-it's nesting limit, past which it drops the rest unread:
    the saved HTML (and the live view) lost the answer's words, and the Markdown form kept that unread rest as
    written, a javascript: link and an image that loads by itself for a renderer that reads deeper (cmark, GitHub).
    Quotes and list items past `MAX_DEPTH` on a line are now its text in every form (the HTML and Markdown forms read the
    same), and an answer still past the parser's limit is shown as its text (HTML) or code (Markdown)."""
    rest = "the answer is 42 [x](javascript:alert(1)) ![a](https://e.example/p.png)"
    for nested in ("> " * 25, "- " * 12):
        transcript = _turn(f"<|channel|>final<|message|>{nested}{rest}<|return|>")
        assert "the answer is 42" in transcript.to_html()
        deep = MarkdownIt("commonmark", {"html": True, "maxNesting": 1000})   # a renderer with a deeper limit
        deep.validateLink = lambda url: True
        shown = deep.render(transcript.to_markdown())
        assert "the answer is 42" in shown, shown
        assert "<img" not in shown and 'href="javascript' not in shown


def test_a_saved_turn_converted_for_a_terminal_carries_no_escape_sequence() -> None:
    """`jupyter nbconvert --to markdown --stdout` (or rst, html) of a saved turn printed the model's escape sequences
    as they were: a terminal retitled its window, cleared its screen and took a clipboard write (OSC 52) from the
    answer. The saved HTML and Markdown now write control characters out (`\\x1b`), as the saved text does."""
    import nbformat
    from nbconvert import MarkdownExporter, RSTExporter

    escapes = "\x1b]0;PWNED\x07 \x1b[2J \x1b]52;c;ZWNobyBoaQ==\x07 \x9b31m \x00\x08"
    transcript = _turn(f"<|channel|>analysis<|message|>Think {escapes}<|end|>"
                       f"<|start|>assistant<|channel|>final<|message|>It is **42** {escapes}<|return|>",
                       prompt=f"Six times seven? {escapes}")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%%gptoss\nSix times seven?", outputs=[
        nbformat.v4.new_output("display_data", data=transcript._repr_mimebundle_())])])
    for exporter in (MarkdownExporter(), RSTExporter()):
        printed, _ = exporter.from_notebook_node(notebook)
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", printed), exporter
        assert "\\x1b]0;PWNED\\x07" in printed and "42" in printed
    for form in (transcript.to_html(), transcript.to_markdown()):
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", form) and form.count("\\x1b]52;c;") == 3


def test_the_saved_html_writes_out_nul_and_other_controls_in_every_part_of_the_turn() -> None:
    """The saved HTML dropped a NUL (`pro\\x00mpt` read "prompt"; the answer's showed as U+FFFD) and left `\\x01` and
    `\\x0b` invisible, where the saved text and Markdown write them out; it now writes them out too, in the prompt,
    reasoning, answer, tool code, tool output and notes, keeping tab and line ends, as the live view's HTML does."""
    from gptoss_lab.widgets.transcript import code_html, markdown_html

    controls = "\x00\x01\x0b"
    transcript = _turn(f"<|channel|>analysis<|message|>Th{controls}ink<|end|>"
                       "<|start|>assistant to=python<|channel|>analysis<|message|>print('o' + chr(0) + 'ut')  # \x01\x0b<|call|>"
                       "<|start|>assistant to=fun\x00\x01ctions<|channel|>commentary<|message|>{}<|call|>"
                       f"<|start|>assistant<|channel|>final<|message|>It is{controls}\t42\nhere<|return|>",
                       prompt=f"pro{controls}mpt\tnow\nnext")
    page = transcript.to_html()
    written = "\\x00\\x01\\x0b"
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", page)
    for part in (f"pro{written}mpt\tnow<div>next</div>", f"Th{written}ink", f"It is{written}\t42\nhere", "# \\x01\\x0b</span>",
                 "o\\x00ut", "The model called 'fun\\x00\\x01ctions'"):
        assert part in page, part
    assert markdown_html(f"a{controls}b") == f"<p>a{written}b</p>\n" and written in code_html(f"'{controls}'")


def test_a_turn_exported_to_markdown_keeps_its_html_one_block_that_no_markdown_reaches() -> None:
    """`jupyter nbconvert --to markdown` writes a saved turn's HTML form into the Markdown as it is, and a blank line
    (in a tool's output, in the answer's code, in the browser cards' style) ended that HTML block: the rest of the
    turn was read as Markdown, so a page or output's `![t](…)` fetched an image where the Markdown was shown (GitHub,
    an editor's preview) and its `**` made bold text. The text is shown as the model and tool wrote it."""
    import nbformat
    from nbconvert import MarkdownExporter

    from gptoss_lab.tools.browser import Browser

    hostile = "![t](https://evil.example/pixel.png) **bold**"
    output = f"ok\n\n  \n{hostile}"
    recording = (f"<|channel|>analysis to=python<|message|>print({output!r})<|call|>"
                 '<|start|>assistant<|channel|>analysis to=browser.open code<|message|>{"id": "notes.md"}<|call|>'
                 "<|start|>assistant<|channel|>final<|message|>"
                 f"See 【0†L2】:\n\n```\na\n\n{hostile}\n```<|return|>")
    reply = Session(ReplayEngine(recording), namespace={}, approval="auto", tools="python,browser",
                    browser=Browser({"notes.md": f"# Notes\n\nfirst\n\n{hostile}\n"})).ask("Check it.")
    bundle = Transcript.from_reply(reply)._repr_mimebundle_()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%%gptoss\nCheck it.", outputs=[
        nbformat.v4.new_output("display_data", data=bundle)])])
    shown = _rendered(MarkdownExporter().from_notebook_node(notebook)[0])
    assert "<img" not in shown and "<strong>" not in shown, shown
    assert shown.count(hostile) >= 3 and "tok/s" in shown       # the output, the page and the answer's code, as written


def test_a_header_that_is_not_valid_harmony_shows_its_direction_controls_in_the_saved_forms() -> None:
    """A live turn's saved form shows the raw text of a header that is not valid Harmony; its direction controls were
    obeyed there (`to=functions.\\u202etxt.exe` read `to=functions.exe.txt`, a name the model never wrote), where the
    Reply's note and the saved text write them out. The HTML and Markdown forms write them out too."""
    events: list = []

    class Watching:
        stop_requested = False
        handle = events.append

        def approve(self, call: object) -> None:
            return None

    Session(ReplayEngine("<|channel|>commentary to=functions.\u202etxt.exe<|end|>"
                         "<|start|>assistant<|channel|>final<|message|>Done.<|return|>"), namespace={}).ask(
        "Check it.", view=Watching())
    transcript = Transcript.from_events(events)
    for form in (transcript.to_html(), transcript.to_markdown()):
        assert "\u202e" not in form and "to=functions.\\u202etxt.exe" in form, form


def test_a_doctor_report_exported_to_markdown_shows_a_folders_name_as_written() -> None:
    """The doctor's HTML held a checkpoint folder's name (or an error) as it was: a blank line in it ended the HTML
    block in `nbconvert --to markdown`, and the rest was read as Markdown (a name's `![t](…)` fetched an image)."""
    import dataclasses

    import nbformat
    from nbconvert import MarkdownExporter

    from gptoss_lab import doctor

    hostile = "![t](https://evil.example/pixel.png) **bold**"
    report = dataclasses.replace(doctor("tiny", memory="8 GB"), model=f"runs/a\n\n{hostile}")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("doctor(...)", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": report._repr_html_(), "text/plain": str(report)})])])
    shown = _rendered(MarkdownExporter().from_notebook_node(notebook)[0])
    assert "<img" not in shown and "<strong>" not in shown, shown
    assert hostile in shown and "doctor: runs/a" in shown


def _render_seconds(answer: str) -> float:
    """Seconds `markdown_html` takes for `answer`, the garbage collector off (its passes would be most of the noise)."""
    import gc
    import time

    from gptoss_lab.widgets.transcript import markdown_html

    gc.disable()
    try:
        t0 = time.perf_counter()
        markdown_html.__wrapped__(answer)   # not its cache
        return time.perf_counter() - t0
    finally:
        gc.enable()


def test_an_answer_quoted_deep_over_many_lines_is_rendered_in_about_the_time_of_one_quote() -> None:
    """markdown-it reads each line once for every quote it is in: an answer of one line 10 quotes deep over 8,000 lazy
    lines took 3.5 s to save (a quote one deep, under a second). Quotes past `MAX_DEPTH` on a line are its text, and
    every word is still shown."""
    from gptoss_lab.widgets.transcript import markdown_html

    deep, plain = "> " * 10 + "owl\n" * 6_000, "> owl\n" * 4_000   # of one size
    markdown_html(plain)
    best = {answer: min(_render_seconds(answer) for _ in range(2)) for answer in (deep, plain)}
    assert best[deep] < 4 * best[plain]   # 9 times before
    shown = markdown_html("> " * 10 + "owl\n" + "vole\n" * 3)
    assert shown.count("<blockquote>") == 4 and "&gt; &gt; &gt; &gt; &gt; &gt; owl" in shown
    assert shown.count("vole") == 3


def test_a_cited_answer_is_read_about_once_for_its_text_and_markdown_forms() -> None:
    """A saved turn's text and Markdown forms read a cited answer's blocks five times (its citations' code in each
    form, its headings, the whole turn and the answer's piece of it again): one 10 quotes deep over 8,000 lines took
    3.5 s. Each text is now read once across the forms, and the pieces not again."""
    import gc
    import time

    answer = "".join(f"- owl {i} 【0†L1】\n" for i in range(1_500))

    def seconds(form: str) -> float:
        transcript = Transcript.from_events([TurnStart("Check it.", "low", "replay", "auto"),
                                             MessageStart("final", None), Delta(answer, "final"), MessageEnd(None, None)])
        transcript.citations = [Citation("【0†L1】", 0, 1, 1, "https://a.example/", "A page", "cited line")]
        gc.disable()
        try:
            t0 = time.perf_counter()
            shown = transcript.to_text() + transcript.to_markdown() if form == "saved" else MarkdownIt("commonmark").parse(answer)
            assert form != "saved" or "    - owl 1499 [1]" in shown and "> - owl 1499 \\[1\\]" in shown
            return time.perf_counter() - t0
        finally:
            gc.enable()

    assert min(seconds("saved"), seconds("saved")) < 3 * min(seconds("parse"), seconds("parse"))   # 7 times before


def test_an_answer_of_long_formulas_is_rendered_in_about_the_time_of_prose() -> None:
    """latex2mathml takes 30 times what Markdown prose takes per character: an answer of one 60,000-character formula
    took 0.9 s to render (and twice at the turn's end). Formulas past MATH_BUDGET characters are shown as their source."""
    from gptoss_lab.widgets.transcript import markdown_html

    formulas, prose = "$x^2$ and $" + "a+" * 20_000 + "b$", "Owls hunt voles. " * 2_353   # of one size
    markdown_html(prose)
    best = {answer: min(_render_seconds(answer) for _ in range(3)) for answer in (formulas, prose)}
    assert best[formulas] < 5 * best[prose]   # 900 times before
    shown = markdown_html(formulas)
    assert shown.count("<math") == 1 and '<code class="gx-math">' + "a+" * 20_000 + "b</code>" in shown


def test_a_direction_override_in_any_text_of_the_turn_is_written_out_in_every_saved_form() -> None:
    """An answer's `user\\u202eexe.txt` read "usertxt.exe" in the saved HTML and Markdown (and the live view), the
    prompt's, reasoning's and preamble's too; only the text form wrote it out. The overrides (LRO, RLO) are written out in
    every form; right-to-left text keeps its marks, embeddings and isolates."""
    from gptoss_lab.widgets.transcript import markdown_html

    spoof = "Open user\u202eexe.txt or \u202dreversed\u202c; \u05e9\u05dc\u05d5\u05dd\u200f \u2067\u05d0\u2069."
    transcript = Transcript.from_events([
        TurnStart(f"Ask {spoof}", "low", "replay", "auto"), MessageStart("analysis", None), Delta(spoof, "analysis"),
        MessageEnd(None, None), MessageStart("commentary", None), Delta(spoof, "commentary"), MessageEnd(None, None),
        MessageStart("final", None), Delta(spoof, "final"), MessageEnd(None, None)])
    forms = {**transcript._repr_mimebundle_(), "live": markdown_html(spoof)}
    for name, form in forms.items():
        assert "\u202e" not in form and "\u202d" not in form, name
        assert form.count("user\\u202eexe.txt") == (1 if name == "live" else 4), name
        assert "\u05e9\u05dc\u05d5\u05dd\u200f" in form and "\u2067\u05d0\u2069" in form or name == "text/plain", name
