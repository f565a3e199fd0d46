"""Transcript: the turn as view state, and the text/Markdown/HTML a reader without the widget sees."""
from __future__ import annotations

import io
import time

import pytest
from openai_harmony import Role

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import (Approval, Citation, Delta, MessageEnd, MessageStart, ToolCall, ToolEnd, ToolStart,
                               TurnStart, Usage)
from gptoss_lab.widgets.text import TextView
from gptoss_lab.widgets.transcript import MarkdownBlocks, Transcript, markdown_html, more_label, stats_line

RECORDING = (
    "<|channel|>analysis<|message|>Compute it with Python.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(sum(i * i for i in range(10)))<|call|>"
    "<|channel|>analysis<|message|>Got it.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>The sum is **285**: $\\sum i^2$\n\n<script>alert(1)</script><|return|>"
)


class _Recorder:
    stop_requested = False

    def __init__(self) -> None:
        self.events: list = []

    def handle(self, event) -> None:
        self.events.append(event)

    def approve(self, call) -> None:
        return None


@pytest.fixture()
def turn() -> tuple[Transcript, object]:
    view = _Recorder()
    reply = Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Sum of squares?", view=view)
    return Transcript.from_events(view.events), reply


def test_events_build_the_turn(turn) -> None:
    transcript, _ = turn
    assert transcript.prompt == "Sum of squares?"
    blocks = transcript.items
    assert [b.kind for b in blocks] == ["reasoning", "tool", "reasoning", "final"]
    assert blocks[1].call.status == "done" and blocks[1].call.output.strip() == "285"
    assert blocks[0].tokens > 3 and blocks[0].ended is not None
    assert transcript.stats["tokens"] > 20 and transcript.stats["model"] == "replay"


def test_reply_rebuilds_the_same_turn(turn) -> None:
    live, reply = turn
    again = Transcript.from_reply(reply)
    assert [(b.kind, b.text) for b in again.items] == [(b.kind, b.text) for b in live.items]
    assert again.items[1].call.output == live.items[1].call.output


def test_fallback_renderings_show_the_whole_turn(turn) -> None:
    transcript, _ = turn
    text, md, page = transcript.to_text(), transcript.to_markdown(), transcript.to_html()
    for rendering in (text, md):
        assert "Sum of squares?" in rendering and "Compute it with Python." in rendering
        assert "print(sum(i * i for i in range(10)))" in rendering and "285" in rendering
    assert "<details><summary>Reasoning" in md and "```python\nprint(sum" in md
    assert "<strong>285</strong>" in page and "<math" in page and "<details" in page
    assert "<script>" not in page and "&lt;script&gt;" in page     # the model's raw HTML stays text
    assert "tok/s" in text


def test_the_stats_line_says_first_token_after_not_ttft(turn) -> None:
    """The footer says "first token after 0.21 s" and "3.0 s in all" in the live view's line, the saved HTML and
    Markdown and the text view: "TTFT 0.21 s · 3.0 s" said nothing to a new user."""
    transcript, _ = turn
    stats = {**transcript.stats, "ttft": 0.2134, "seconds": 3.04}
    line = "first token after 0.21 s · 3.0 s in all"
    assert line in stats_line(stats)
    transcript.stats = stats
    out = io.StringIO()
    view = TextView(out, colour=False)
    Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Sum of squares?", view=view)
    shown = [transcript.footer(context=False), transcript.to_text(), transcript.to_markdown(), transcript.to_html()]
    assert all(line in form and "TTFT" not in form for form in shown)
    assert "first token after " in out.getvalue() and " s in all" in out.getvalue() and "TTFT" not in out.getvalue()


def test_markdown_is_sanitised() -> None:
    html = markdown_html("[x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    assert "href" not in html and "<img" not in html          # no link to javascript:, the tag as text


def stable_markdown_end(text: str) -> int:
    """Where the blocks of `text` that later text cannot change end, as a streaming view cuts it."""
    blocks = MarkdownBlocks()
    blocks.add(text)
    return len(blocks.take())


def test_stable_markdown_end_stops_before_open_blocks() -> None:
    assert stable_markdown_end("para one\n\npara two") == len("para one\n\n")
    assert stable_markdown_end("```py\nx = 1\n\ny = 2\n") == 0           # inside a fence: nothing is final
    assert stable_markdown_end("a\n\n```\ncode\n```\n\nb") == len("a\n\n```\ncode\n```\n\n")


@pytest.mark.parametrize(("outer", "inner"), [("````", "```python"), ("````", "```"), ("~~~~", "~~~"),
                                              ("~~~", "```"), ("`````", "````py")])
def test_an_answer_streams_a_fence_that_shows_fences_as_code(outer: str, inner: str) -> None:
    """A ```` block (or a ~~~ one) that shows a ``` block is not cut at its inner fences while it streams: the part
    after the first one was sent as prose (its `# comment` drawn as a heading) until the answer ended."""
    streaming = f"Example:\n\n{outer}markdown\n{inner}\n# comment\n\nx = 1\n"
    assert stable_markdown_end(streaming) == len("Example:\n\n")
    done = f"{streaming}{inner.rstrip('abcdefghijklmnopqrstuvwxyz')}\n\n{outer}\n\nAfter.\n"  # the inner one closed
    assert stable_markdown_end(done) == len(done) - len("After.\n")


def test_text_view_streams_channels() -> None:
    out = io.StringIO()
    view = TextView(out)
    Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Sum?", view=view)
    printed = out.getvalue()
    assert printed.index("Reasoning") < printed.index("Tool call python") < printed.index("Answer")
    assert "The sum is **285**" in printed and "[python: done]\n    285" in printed


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_view_colours_a_terminal_unless_no_color(monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    printed = {}
    for name, out in (("terminal", _Terminal()), ("pipe", io.StringIO())):
        Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Sum?", view=TextView(out))
        printed[name] = out.getvalue()
    assert "\x1b[1;36m\n── Answer ──\x1b[0m" in printed["terminal"]           # headers in colour
    assert "\x1b[32mdone\x1b[0m" in printed["terminal"]                      # a green "done"
    assert "\x1b[" not in printed["pipe"]                                     # not a terminal: plain
    monkeypatch.setenv("NO_COLOR", "1")
    assert not TextView(_Terminal()).colour



def test_text_view_footer_writes_out_control_characters_of_the_model_name() -> None:
    """The footer names the model, a name a server chooses: it reached the terminal raw (an OSC retitle here)."""
    engine = ReplayEngine("<|channel|>final<|message|>ok<|return|>")
    engine.name = "evil\x1b]0;pwned\x07\x1b[2J"
    out = _Terminal()
    Session(engine, namespace={}).ask("q", view=TextView(out, colour=True))
    footer = out.getvalue().rsplit("-- ", 1)[1]
    assert "\x1b]" not in footer and "\x07" not in footer and "\x1b[2J" not in footer
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J" in footer

def test_text_view_breaks_a_tools_output_at_a_return_as_the_saved_text_does() -> None:
    """A tool's Windows line ends and progress returns printed `a\\r` and `\\r50%\\r100%` written out on one line in the
    text view, where the saved text shows one line each: the text view now breaks its lines where the saved text does
    (each indented, no return reaches the terminal)."""
    code = "import sys\nprint('a\\r\\nb')\nsys.stdout.write('\\r50%\\r100%\\n')"
    recording = (f"<|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>"
                 "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
    out, view = io.StringIO(), _Recorder()
    Session(ReplayEngine(recording), namespace={}, approval="auto").ask("Run", view=TextView(out, colour=False))
    Session(ReplayEngine(recording), namespace={}, approval="auto").ask("Run", view=view)
    lines = "    a\n    b\n    \n    50%\n    100%"
    output = out.getvalue().split("[python: done]")[1]
    assert output.startswith(f"\n{lines}\n") and "\\r" not in output and "\r" not in output, output
    assert lines in Transcript.from_events(view.events).to_text()


def test_text_view_cannot_ask_without_stdin(monkeypatch) -> None:
    def no_stdin(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    assert TextView(io.StringIO()).approve(object()) is None  # type: ignore[arg-type]


def test_delta_without_start_gets_a_block() -> None:
    transcript = Transcript.from_events([Delta("hi", "final"), MessageEnd(None, None), MessageStart("final", None)])
    assert transcript.items[0].text == "hi" and transcript.items[0].kind == "final"



def test_a_reopened_reply_names_its_problems_as_the_live_view_did() -> None:
    """`%gptoss history` and a displayed Reply rebuild the turn from `reply.errors`: a skipped call is a
    warning, as it was live, not "Not valid Harmony", and a parse error is not wrapped twice."""
    recording = ("<|channel|>analysis<|message|>Try <|constrain|> here.<|end|>"
                 "<|start|>assistant to=python<|channel|>analysis<|message|>print(1)<|call|>"
                 "<|channel|>final<|message|>I could not run it.<|return|>")
    view = _Recorder()
    reply = Session(ReplayEngine(recording), namespace={}, approval="ask").ask("Run it.", view=view)
    live, again = Transcript.from_events(view.events), Transcript.from_reply(reply)
    skip = "*warning: The python call was skipped: approval is required"
    assert skip in live.to_markdown() and skip in again.to_markdown()
    for rendering in (again.to_markdown(), again.to_text(), again.to_html()):
        assert "Not valid Harmony (The python call" not in rendering
        assert "Not valid Harmony (Not valid Harmony" not in rendering
        assert rendering.count("a special token inside a message") == 1


def test_a_reopened_failed_turn_says_its_failure_as_an_error_as_the_live_view_did() -> None:
    """A turn whose engine failed said "[error] The turn failed: …" live, in red; `%gptoss history` and a displayed
    Reply said it as a warning (in orange in the HTML)."""
    view = _Recorder()
    reply = Session(ReplayEngine("<|start|>assistant to=python<|channel|>analysis<|message|>print(1)<|call|>"),
                    namespace={}, approval="auto").ask("Run it.", view=view)
    assert reply.failed
    for transcript in (Transcript.from_events(view.events), Transcript.from_reply(reply)):
        assert "[error] The turn failed: " in transcript.to_text() and "*error: The turn failed: " in transcript.to_markdown()
        assert '<div class="gx-notice gx-error">The turn failed: ' in transcript.to_html()


def test_a_long_tool_output_folds_in_saved_renderings_and_loses_nothing() -> None:
    recording = ("<|start|>assistant to=python<|channel|>analysis<|message|>for i in range(300): print('row', i)<|call|>"
                 "<|channel|>final<|message|>Printed 300 rows.<|return|>")
    reply = Session(ReplayEngine(recording), namespace={}, approval="auto").ask("Print rows")
    transcript = Transcript.from_reply(reply)
    output = reply.tool_calls[0].output
    assert output.startswith("row 0\nrow 1\n") and "row 299" in output
    for rendering in (transcript.to_html(), transcript.to_markdown()):
        shown, folded = rendering.split("<details><summary>", 1)[0], rendering.split("<details><summary>", 1)[1]
        assert "row 19" in shown and "row 20" not in shown  # 20 lines shown, the rest folded ...
        assert folded.startswith("280 more lines (") and "row 20\n" in folded and "row 299" in folded  # ... not lost
        assert rendering.index("Printed 300 rows.") > rendering.index("row 299")
    short = Transcript.from_reply(Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("q"))
    assert "more line" not in short.to_html() and "more line" not in short.to_markdown()


def test_a_long_prompt_folds_in_the_saved_turn_and_loses_nothing() -> None:
    """A pasted 60-line prompt shows its first 20 lines above the answer; the rest is one click away (it filled the
    screen and pushed the answer out of sight)."""
    prompt = "\n".join(f"line {i} of the pasted log" for i in range(60))
    page = Transcript.from_reply(Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask(prompt)).to_html()
    shown, folded = page.split('<details><summary>', 1)
    assert "line 19 of" in shown and "line 20 of" not in shown
    assert folded.startswith("40 more lines (") and "line 20 of" in folded and "line 59 of" in folded
    assert folded.index("line 59 of") < folded.index("</details></div>")   # inside the prompt's box
    assert "<details>" not in Transcript.from_reply(
        Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("A short question?")).to_html().split(
        "gx-reasoning")[0]


def test_a_prompt_cut_inside_its_long_first_line_says_the_rest_of_that_line_is_folded_too() -> None:
    """A 3 000-character line then two short ones: the card shows 2 000 characters and folds the line's end, which
    the summary counted as a line ("2 more lines" for one line and a half-line's end)."""
    prompt = "word " * 600 + "\nsecond line\nthird line"
    page = Transcript.from_reply(Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask(prompt)).to_html()
    folded = page.split("<details><summary>", 1)[1]
    rest = len(prompt) - 2000
    assert folded.startswith(f"the rest of the line and 2 more lines ({rest:,} characters)</summary>"), folded[:90]
    single = more_label("x" * 3000, "x" * 1000)
    assert single == "1,000 more characters" and more_label("a\n" * 30, "a\n" * 10) == "10 more lines (20 characters)"
    assert more_label("x" * 2500 + "\nend", "x" * 500 + "\nend") == "the rest of the line and 1 more line (504 characters)"


def test_a_tool_call_of_backticks_renders_in_linear_time_and_its_name_is_cut() -> None:
    """A tool name, code and output of 64 000 backticks each (a hostile or broken server): every code span and
    fence is one backtick longer than the longest run inside, found in one pass (a loop of `in` checks took
    10 s for the Markdown form, 13 s for the chat view's turn end); a saved card shows 200 characters of the
    name (it was a head 6 500 px tall)."""
    ticks = "`" * 64_000
    call = ToolCall(ticks, "analysis", ticks, status="done", output=ticks)
    transcript = Transcript.from_events([TurnStart("Hi", "low", "replay", "auto"), MessageStart("analysis", ticks),
                                         Delta(ticks, "analysis"), MessageEnd(None, None), ToolStart(call), ToolEnd(call)])
    start = time.perf_counter()
    markdown, page, text = transcript.to_markdown(), transcript.to_html(), transcript.to_text()
    assert time.perf_counter() - start < 1.0
    name = "`" * 200 + "… (63,800 more characters)"
    assert f"**Tool call {'`' * 201} {name} {'`' * 201}** — done" in markdown
    assert f"{'`' * 64_001}\n{ticks}\n{'`' * 64_001}" in markdown               # the code, as written
    assert f">{name} · done</b></div></td>" in page and f"Tool call {name} [done]" in text


def test_a_long_tool_name_is_cut_in_the_cards_head_and_kept_whole_in_a_fold() -> None:
    """A server's tool name of 50,000 characters was written out whole (its zero-width spaces as `\\u200b`) before the
    head cut it, in every form, and the saved forms then kept 200 characters of it: the rest of the name was nowhere.
    The head shows the first 200 characters, written out; the saved HTML and Markdown fold the whole name under it."""
    name = "functions." + "a\u200b" * 25_000
    call = ToolCall(name, "commentary", "{}", status="done", output="ok")
    transcript = Transcript.from_events([TurnStart("Hi", "low", "replay", "auto"), MessageStart("commentary", name),
                                         Delta("{}", "commentary"), MessageEnd(None, None), ToolStart(call),
                                         ToolEnd(call)])
    head = name[:200].replace("\u200b", "\\u200b") + "… (49,810 more characters)"
    whole = name.replace("\u200b", "\\u200b")
    markdown, page = transcript.to_markdown(), transcript.to_html()
    assert f"Tool call {head} [done]" in transcript.to_text() and f"{head} · done</b></div></td>" in page
    fold = "<details><summary>the tool's whole name (50,010 characters)</summary>"
    assert f"** — done\n\n{fold}\n\n```\n{whole}\n```" in markdown and f"{fold}{whole}</details>" in page


def test_the_text_view_cuts_a_long_tool_name_as_the_saved_card_does() -> None:
    """A server can send a tool name of 64 000 characters: the saved card shows 200 of them, but the text view printed
    all of them in the call's header and again in each of its status lines (a terminal screen of one name)."""
    name = "functions." + "ab" * 1_500
    recording = (f"<|start|>assistant to={name}<|channel|>commentary json<|message|>{{}}<|call|>"
                 "<|start|>assistant<|channel|>final<|message|>ok<|return|>")
    out = io.StringIO()
    Session(ReplayEngine(recording), namespace={}, approval="auto").ask("q", view=TextView(out, colour=False),
                                                                        max_new_tokens=5_000)
    shown = f"{name[:200]}… ({len(name) - 200:,} more characters)"
    assert f"── Tool call {shown} ──" in out.getvalue() and f"[{shown}: error]" in out.getvalue()
    assert max(map(len, out.getvalue().splitlines())) < 300


def test_one_token_is_said_in_the_singular():
    """A one-token reasoning block and turn said "1 tokens" (the live view as well: static/chat.js)."""
    from gptoss_lab.widgets.transcript import stats_line

    assert stats_line({"tokens": 1}) == "1 token" and stats_line({"tokens": 2}) == "2 tokens"


def test_a_short_reasoning_block_says_under_a_tenth_of_a_second_not_no_time():
    """A 12-token reasoning block streamed in 20 ms said "thought for 0.0 s", which reads as "did not think"."""
    t = Transcript()
    t.apply(TurnStart("q", "low", "m", "ask"))
    t.apply(MessageStart("analysis", None, None))
    t.apply(Delta("Add them.", "analysis"))
    block = t.items[-1]
    block.tokens, block.started, block.ended = 12, 100.0, 100.02
    assert "thought for under 0.1 s · 12 tokens" in t.to_html()
    block.ended = 101.26
    assert "thought for 1.3 s · 12 tokens" in t.to_html()


class _Skipper(_Recorder):
    def approve(self, call) -> bool:
        return False


class _Named(_Recorder):
    def approve(self, call) -> Approval:
        return Approval(False, by="the reviewer")


@pytest.mark.parametrize(("view", "approval", "shown"), [
    (_Skipper(), "ask", "Skipped by _Skipper"),   # the view's code decided, not the reader ("Skipped by you")
    (_Named(), "ask", "Skipped by the reviewer"),
    (_Recorder(), "never", "Not run: approval is set to never"),
    (_Recorder(), "ask", "Not run: could not ask you (no front end)"),
])
def test_a_call_not_run_says_why_to_the_user_in_the_saved_turn(view, approval, shown) -> None:
    """A skipped call's saved card (HTML, Markdown, text) says why in the user's words; the sentence written for the
    model ("Not run: the user chose not to run this call. Answer without it, and say so.") is in its tool reply only."""
    ns: dict = {}
    reply = Session(ReplayEngine(RECORDING), namespace=ns, approval=approval).ask("Sum of squares?", view=view)
    [call] = reply.tool_calls
    assert call.status == "skipped" and "i" not in ns and call.output.startswith("Not run: the user")
    assert [m.content[0].text for m in reply.messages if m.author.role == Role.TOOL] == [call.output]  # the model's
    for transcript in (Transcript.from_reply(reply), Transcript.from_events(view.events)):
        bundle = transcript._repr_mimebundle_()
        for mime in ("text/html", "text/markdown", "text/plain"):
            assert shown in bundle[mime] and "Answer without it" not in bundle[mime], mime


def test_a_reply_shown_as_a_cells_value_reads_as_its_transcript_in_every_form() -> None:
    """A Reply as a cell's last value showed its transcript as HTML and Markdown, but its text/plain (terminal
    IPython, jupyter console) was the dataclass's dump on one line: `Reply(prompt=..., messages=[Message(...)...])`.
    With the Python API alone (no `%load_ext gptoss_lab`), it was the one-line repr in every form."""
    from IPython.core.interactiveshell import InteractiveShell

    reply = Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Sum of squares?")
    shell = InteractiveShell.instance()
    try:
        alone, _ = shell.display_formatter.format(reply)
        shell.run_line_magic("load_ext", "gptoss_lab")
        shown, _ = shell.display_formatter.format(reply)
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell
    assert alone == shown
    text = shown["text/plain"]
    assert text.startswith("You: Sum of squares?\n\nReasoning") and "Message(" not in text
    assert "Tool call python [done]:\n    print(sum(i * i for i in range(10)))\n\nOutput:\n    285" in text
    assert "Answer:\n    The sum is **285**" in text and "\n-- " in text
    assert "> **Answer:**\n>\n> The sum is **285**" in shown["text/markdown"]
    assert "<strong>285</strong>" in shown["text/html"]


def test_a_replys_repr_is_one_bounded_line() -> None:
    """`repr(reply)` (`_gptoss` in a list, a plain Python prompt) was the dataclass's dump of every message: a
    100,000-character answer was a 100,000-character line. It is one short line that says what the turn was."""
    answer = "word " * 20_000
    reply = Session(ReplayEngine(f"<|channel|>final<|message|>{answer}<|return|>"), namespace={}).ask("Write a lot")
    shown = repr(reply)
    assert len(shown) < 250 and "\n" not in shown, shown
    assert shown.startswith("Reply(prompt='Write a lot', final='word word word") and "1 message, 0 tool calls" in shown
    assert f"{reply.usage.completion_tokens:,} tokens" in shown and "model='replay'" in shown


def test_a_tool_calls_a_citations_and_a_usages_repr_are_one_short_line() -> None:
    """`print(reply.tool_calls)`, as the README does, printed the dataclass's dump of the whole code and output (a
    call that printed 150,000 characters was a line of the 6,000 the model read); a citation quoted every cited line;
    a Usage wrote its seconds to 16 figures, and not the speed."""
    code = "print('<b>' * 50_000)"
    recording = (f"<|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>"
                 "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
    reply = Session(ReplayEngine(recording), namespace={}, approval="auto").ask("Shout")
    shown = str(reply.tool_calls)
    assert len(reply.tool_calls[0].output) > 5_000 and len(shown) < 250 and "\n" not in shown, shown
    assert shown.startswith("[ToolCall('python', done, input=\"print('<b>' * 50_000)\", output='<b><b>")
    cited = Citation(marker="【1†L1-L9】", cursor=1, start=1, end=9, url="file:///notes.md", title="Notes",
                     text="line\n" * 10_000)
    assert repr(cited).startswith("Citation(【1†L1-L9】, url='file:///notes.md', title='Notes', text='line\\nline")
    assert len(repr(cited)) < 200
    usage = Usage(prompt_tokens=208, completion_tokens=37, seconds=0.7088705900023342, ttft=0.2977165670017712,
                  generation_seconds=0.6917767900013132, context_tokens=211, context_window=12288)
    assert repr(usage) == ("Usage(prompt_tokens=208, completion_tokens=37, seconds=0.709, ttft=0.298, "
                           "generation_seconds=0.692, tokens_per_s=53.5, context_tokens=211, context_window=12288)")


@pytest.mark.parametrize(("recording", "approval"), [
    # a call to a tool that is not enabled: noted under the call's card, before the answer
    ("<|start|>assistant to=foo<|channel|>commentary<|message|><|call|>"
     "<|start|>assistant<|channel|>final<|message|>Done.<|return|>", "auto"),
    # a call nobody could approve: noted under its card, before the answer
    ("<|start|>assistant to=python<|channel|>analysis<|message|>print(1)<|call|>"
     "<|start|>assistant<|channel|>final<|message|>Done.<|return|>", "ask"),
    # a format token inside the reasoning (noted while the message was written): under the reasoning
    ("<|channel|>analysis<|message|>Try <|constrain|> here.<|end|>"
     "<|start|>assistant<|channel|>final<|message|>Done.<|return|>", "auto"),
])
def test_a_reopened_reply_puts_each_note_where_the_live_view_did(recording, approval) -> None:
    """`%gptoss history` and a displayed Reply listed every note of the turn after all its messages (after the
    answer), where the live view had put each where it happened (under the tool call it was about)."""
    view = _Recorder()
    reply = Session(ReplayEngine(recording), namespace={}, approval=approval).ask("q", view=view)
    live, again = Transcript.from_events(view.events), Transcript.from_reply(reply)

    def order(transcript: Transcript) -> list[str]:
        return [getattr(item, "kind", "note") for item in transcript.items]

    assert "note" in order(live) and order(again) == order(live)
    assert reply.errors and all(isinstance(error, str) for error in reply.errors)


def test_a_reopened_reply_says_an_unknown_tool_under_its_call_not_after_the_answer() -> None:
    view = _Recorder()
    reply = Session(ReplayEngine("<|start|>assistant to=foo<|channel|>commentary<|message|><|call|>"
                                 "<|start|>assistant<|channel|>final<|message|>Done.<|return|>"), namespace={}).ask("q", view=view)
    for transcript in (Transcript.from_events(view.events), Transcript.from_reply(reply)):
        text = transcript.to_text()
        assert text.index("Tool call foo") < text.index("[warning] The model called 'foo'") < text.index("Answer:\n    Done."), text
        markdown = transcript.to_markdown()
        assert markdown.index("*warning: The model called") < markdown.index("> **Answer:**"), markdown


def test_a_message_on_a_channel_that_is_not_one_is_in_the_rebuilt_turn_but_not_the_next_prompt() -> None:
    """`%gptoss history` and a displayed Reply left out the text of a message on a channel that is not one
    (`poem`), which the live view showed as a block before its note; the Reply now keeps it, so the rebuilt turn
    shows it there too, while the conversation the model reads next still leaves it out."""
    answer = "<|start|>assistant<|channel|>final<|message|>42<|return|>"
    view = _Recorder()
    stray = Session(ReplayEngine(f"<|channel|>poem<|message|>Roses are red<|end|>{answer}"), namespace={})
    reply = stray.ask("Six times seven?", view=view)
    live, rebuilt = Transcript.from_events(view.events), Transcript.from_reply(reply)
    assert [(type(i).__name__, getattr(i, "text", "")) for i in rebuilt.items] == \
        [(type(i).__name__, getattr(i, "text", "")) for i in live.items]
    assert "Roses are red\n" in rebuilt.to_text() and "Roses are red" in rebuilt.to_html()
    assert rebuilt.to_text().index("Roses are red\n") < rebuilt.to_text().index("was left out")
    plain = Session(ReplayEngine(answer.removeprefix("<|start|>assistant")), namespace={})
    plain.ask("Six times seven?")
    assert stray.prompt_ids() == plain.prompt_ids() and "Roses" not in stray.export()


def test_a_saved_turn_shows_each_call_under_the_message_that_made_it():
    """A message `to=functions.delete_all` on a channel that is not one is left out, never run; a call to python follows.
    The saved view (`Transcript.from_reply`: a Reply's repr, a saved notebook) gave the python call's card to the first
    message with a recipient: "Tool call functions.delete_all [done]" with python's output, and python's "being written"."""
    recording = ("<|channel|>chat to=functions.delete_all<|message|>{}<|end|>"
                 "<|start|>assistant to=python<|channel|>analysis<|message|>print(6 * 7)<|call|>"
                 "<|start|>assistant<|channel|>final<|message|>42<|return|>")
    view = _Recorder()
    reply = Session(ReplayEngine(recording), namespace={}, approval="auto").ask("q", view=view)
    assert [(call.recipient, call.status, call.output) for call in reply.tool_calls] == [("python", "done", "42\n")]
    for shown in (Transcript.from_reply(reply), Transcript.from_events(view.events)):
        text = shown.to_text()
        assert "Tool call functions.delete_all" not in text and "Tool call python [done]:\n    print(6 * 7)" in text
        assert "Output:\n    42" in text and "being written" not in text


def test_a_saved_turn_shows_the_models_code_was_edited_before_it_ran_as_the_live_card_did() -> None:
    """Code the user edited on the approval card: the live card said "edited before running", but the turn drawn again
    from its Reply (`%gptoss history`, a Reply as a cell's value) showed the user's code as the model's, unmarked."""
    class Editor(_Recorder):
        def approve(self, call) -> Approval:
            return Approval(True, code="print(6 * 7)")

    view, ns = Editor(), {}
    recording = ("<|channel|>analysis<|message|>t<|end|><|start|>assistant to=python<|channel|>analysis code<|message|>"
                 "import os; os.remove('precious')<|call|><|channel|>final<|message|>42<|return|>")
    session = Session(ReplayEngine(recording), namespace=ns, approval="ask")
    reply = session.ask("q", view=view)
    assert reply.tool_calls[0].output == "42\n" and "os.remove" not in session.export()   # what ran, what the model reads
    for transcript in (Transcript.from_events(view.events), Transcript.from_reply(reply)):
        assert "[done · edited before running]:\n    print(6 * 7)" in transcript.to_text()


def test_an_answer_of_markdown_markers_renders_in_bounded_time_with_its_text_kept() -> None:
    """markdown-it's inline parse takes up to 40 µs for each `![`, `[a](`, `*`: an answer of 50,000 `![` took 3.6 s to
    render and `ask` rendered it three times. Past a budget of markers, blocks are plain text (code in Markdown)."""
    answer = "**Kept** [docs](https://e.org)\n\n" + "![" * 40000 + "\n\n" + "[a](" * 20000 + "\n\n" + "*a_$" * 20000
    transcript = Transcript.from_events([TurnStart("Hi", "low", "replay", "auto"), MessageStart("final", None),
                                         Delta(answer, "final"), MessageEnd(None, None)])
    start = time.perf_counter()
    live, saved, markdown = markdown_html(answer), transcript.to_html(), transcript.to_markdown()
    assert time.perf_counter() - start < 1.5
    assert "<strong>Kept</strong>" in live and 'href="https://e.org"' in live   # the first blocks keep their Markdown
    for form in (live, saved, markdown, transcript.to_text()):
        assert all(part in form for part in ("![" * 40000, "[a](" * 20000, "*a_$" * 20000)), form[:200]
