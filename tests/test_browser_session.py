"""Browsing turns through the session (ReplayEngine plays recorded gpt-oss browser calls): the calls
reach the browser, its pages come back to the model as `browser.*` tool messages, and the answer's
citations resolve to the lines that state the fact."""
from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_lab import ReplayEngine, Session, harmony
from gptoss_lab.events import ToolUpdate
from gptoss_lab.session import TurnError
from gptoss_lab.tools.base import TIMEOUT_HINT
from gptoss_lab.tools.browser import Browser, demo_folder
from gptoss_lab.tools.browser.demo import DEMO_QUESTION, DEMO_RECORDING
from gptoss_lab.widgets.citations import sources_text, with_chips
from gptoss_lab.widgets.transcript import markdown_html


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_folder(tmp_path_factory.mktemp("browse") / "docs")


class Approver:
    """A view that approves every call and keeps the questions it was asked."""

    stop_requested = False

    def __init__(self, answer: bool = True) -> None:
        self.answer, self.questions = answer, []

    def handle(self, event: object) -> None:
        if isinstance(event, ToolUpdate) and event.call.status == "waiting":
            self.questions.append(event.call.question)

    def approve(self, call: object) -> bool:
        return self.answer


def browsing_session(docs: Path, **settings: object) -> Session:
    settings.setdefault("approval", "auto")
    return Session(ReplayEngine(DEMO_RECORDING), namespace={}, browser=Browser(docs), tools="browser",
                   date="2026-11-25", **settings)


def test_search_open_find_then_an_answer_whose_citations_resolve(docs: Path) -> None:
    session = browsing_session(docs)
    reply = session.ask(DEMO_QUESTION)
    assert [c.recipient for c in reply.tool_calls] == ["browser.search", "browser.open", "browser.find"]
    assert [c.status for c in reply.tool_calls] == ["done", "done", "done"]
    search, opened, found = reply.tool_calls
    assert search.output.startswith("[0] greenhouse humidity\n**viewing lines [0 - ")
    assert "L4:   * 【0†Greenhouse operating manual†manuals/greenhouse.pdf】" in search.output
    assert "\nL4: Keep the humidity at 68 percent during the day and let it fall at night." in opened.output
    assert found.output.startswith("[2] Find results for text: `humidity` in `Greenhouse operating manual`")
    assert search.data["results"][0]["title"] == "Greenhouse operating manual"

    assert reply.final.startswith("Keep the greenhouse at **68 percent** humidity")
    first, second = reply.citations
    manual = "manuals/greenhouse.pdf"
    assert (first.marker, first.cursor, first.start, first.end, first.url) == ("【1†L4】", 1, 4, 4, manual)
    assert first.text == "Keep the humidity at 68 percent during the day and let it fall at night."
    assert second.text == "The temperature should stay between 18 and 24 degrees Celsius."
    assert first.title == "Greenhouse operating manual"

    assert "## browser\n\n// Tool for browsing." in session.export()             # the trained namespace
    exported = harmony.decode(harmony.render(session.history, keep_analysis_from=0))  # what the model saw in the turn
    assert "<|start|>assistant to=browser.search<|channel|>analysis code<|message|>{\"query\": \"greenhouse humidity\"}<|call|>" in exported
    assert ("<|start|>browser.search to=assistant<|channel|>analysis<|message|>[0] greenhouse humidity\n"
            in exported)                                                        # answered as browser.search
    assert "<|start|>browser.find to=assistant<|channel|>analysis<|message|>[2] Find results" in exported


def test_browser_calls_follow_the_approval_policy(docs: Path) -> None:
    view = Approver()
    reply = browsing_session(docs, approval="ask").ask(DEMO_QUESTION, view=view)
    assert view.questions == ["Search your 4 documents for 'greenhouse humidity'?",
                              "Open result 0: Greenhouse operating manual "
                              "(manuals/greenhouse.pdf)?",
                              "Find 'humidity' in 'Greenhouse operating manual'?"]
    assert [c.status for c in reply.tool_calls] == ["done", "done", "done"]

    skipped = browsing_session(docs, approval="never").ask(DEMO_QUESTION)
    assert skipped.tool_calls[0].status == "skipped"
    assert skipped.tool_calls[0].output.startswith("Not run: the user's settings do not allow tool calls")
    assert all(c.text == "" for c in skipped.citations)   # the model cites pages it never saw: nothing to show


def test_one_browser_per_conversation_and_reset_forgets_its_pages(docs: Path) -> None:
    session = browsing_session(docs)
    session.ask(DEMO_QUESTION)
    assert len(session.browser.stack) == 3
    session.reset()
    assert session.browser.stack == []


def test_asking_for_the_browser_without_documents_is_one_line() -> None:
    session = Session(ReplayEngine("<|channel|>final<|message|>x<|return|>"), namespace={}, tools="browser")
    with pytest.raises(TurnError, match="the browser has no documents to read: choose them with `%gptoss browse FOLDER`"):
        session.ask("hello")


def test_browse_magic_gives_the_session_its_documents_or_one_line(docs: Path, capsys: pytest.CaptureFixture) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        _browse_in(shell, docs, capsys)
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace


def _browse_in(shell, docs: Path, capsys: pytest.CaptureFixture) -> None:
    from IPython.core.error import UsageError

    shell.run_line_magic("load_ext", "gptoss_lab")
    shell.user_ns["s"] = Session(ReplayEngine(""), namespace=shell.user_ns)
    shell.run_line_magic("gptoss", "use s")
    shell.run_line_magic("gptoss", f"browse {docs}")
    out = capsys.readouterr().out
    said = out[out.index("The browser reads"):]
    assert " ".join(said.split()) == (
        f"The browser reads 4 documents in {docs} (1 text, 1 Markdown, 1 PDF, 1 HTML; 63 lines); ask with "
        "`%%gptoss --tools browser` (or `%gptoss config tools=python,browser`).")
    # in lines JupyterLab's output area does not break inside a word (it breaks a longer one at any letter)
    assert all(len(line) <= 68 or " " not in line for line in said.splitlines()), said
    assert isinstance(shell.user_ns["s"].browser, Browser)
    for line, message in ((f"browse {docs}/nowhere", f"%gptoss browse: no such file or folder: {docs}/nowhere"),
                          ("browse exa --api-key-env NO_SUCH_VAR", "%gptoss browse: the environment variable "
                           "NO_SUCH_VAR is not set: put your Exa API key there (or pass api_key=..., or "
                           "`%gptoss browse exa --api-key-env VAR`)"),
                          # You.com's key was told to go with `browse exa`
                          ("browse youcom --api-key-env NO_SUCH_VAR", "%gptoss browse: the environment variable "
                           "NO_SUCH_VAR is not set: put your You.com API key there (or pass api_key=..., or "
                           "`%gptoss browse youcom --api-key-env VAR`)"),
                          # a lowercase name was "given (its name is not shown: it looks like a key ...)"
                          ("browse exa --api-key-env no_such_var", "%gptoss browse: the environment variable "
                           "no_such_var is not set: put your Exa API key there (or pass api_key=..., or "
                           "`%gptoss browse exa --api-key-env VAR`)")):
        with pytest.raises(UsageError) as err:
            shell.run_line_magic("gptoss", line)
        assert str(err.value) == message


def test_large_folders_show_a_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(25):
        (tmp_path / f"note{i:02d}.txt").write_text(f"Note {i}: the lab keeps {i} owls.\n")
    browser = Browser(tmp_path)
    out = capsys.readouterr().out  # stdout: stderr is painted red in JupyterLab
    assert "Reading documents" in out and "25/25" in out
    # the indexing bar follows at once (it waited its own second: with 50,000 files 3.4 s showed no bar moving)
    assert "Indexing documents (titles):   0%|          | 0/25 [00:00]" in out
    assert browser.describe().startswith("25 documents in ")


@pytest.mark.parametrize("function, arguments, error", [
    ("open", '{"cursor": "²"}', "`cursor` should be an integer, not `str`"),   # was a ValueError: the turn failed
    ("open", '{"cursor": "two"}', "`cursor` should be an integer, not `str`"),
    ("search", "{}", 'Invalid function arguments: browser.search needs `query` (a string), e.g. {"query": '
                     '"solar panel cleaning"}'),
    ("search", '{"query": "  "}', 'Invalid function arguments: `query` is empty, e.g. {"query": "solar panel cleaning"}'),
    ("search", '{"query": "owls", "site": "x.org"}', "Invalid function arguments: browser.search has no parameter "
                                                     "`site` (it takes query, source, top_n, topn)"),
    ("find", '["owls"]', 'Invalid function arguments: browser.find takes a JSON object, e.g. {"pattern": "warranty"}'),
])
def test_a_call_whose_arguments_cannot_run_is_answered_without_asking(docs: Path, function: str, arguments: str,
                                                                       error: str) -> None:
    """The user was asked "Run browser.search with {}?", and the call failed once they approved it."""
    recording = (f'<|channel|>analysis to=browser.{function} code<|message|>{arguments}<|call|>'
                 '<|channel|>final<|message|>No page to open.<|return|>')
    view = Approver()
    reply = Session(ReplayEngine(recording), namespace={}, browser=Browser(docs), tools="browser",
                    approval="ask").ask("Open it.", view=view)
    assert view.questions == []
    assert [(c.status, c.output) for c in reply.tool_calls] == [("error", error)]
    assert reply.final == "No page to open."


def test_a_call_of_a_page_or_link_not_shown_is_answered_without_asking(docs: Path) -> None:
    """With no page open the user was asked "Open link 3 of the page at cursor -1?", then the call failed as "No
    pages to access!"; a link, cursor or line the pages shown do not have, or a find in a results page, alike."""
    calls = ['to=browser.open code<|message|>{"id": 3}', 'to=browser.find code<|message|>{"pattern": "humidity"}',
             'to=browser.search code<|message|>{"query": "greenhouse humidity"}',
             'to=browser.open code<|message|>{"id": 99}', 'to=browser.open code<|message|>{"id": 0, "cursor": 7}',
             'to=browser.open code<|message|>{"loc": 5000}', 'to=browser.find code<|message|>{"pattern": "humidity"}']
    recording = "".join(f"<|start|>assistant<|channel|>analysis {call}<|call|>" for call in calls) + \
        "<|start|>assistant<|channel|>final<|message|>The manual was not opened.<|return|>"
    view = Approver()
    reply = Session(ReplayEngine(recording.removeprefix("<|start|>assistant")), namespace={}, browser=Browser(docs),
                    tools="browser", approval="ask").ask("Humidity?", view=view)
    assert view.questions == ["Search your 4 documents for 'greenhouse humidity'?"]
    assert [(c.status, c.output) for c in reply.tool_calls if c.status != "done"] == [
        ("error", "No pages to access!"), ("error", "No pages to access!"), ("error", "Invalid link id `99`."),
        ("error", "Cursor `7` is out of range. Available cursor indices: [0 - 0]."),
        ("error", "Invalid location parameter: `5000`. Cannot exceed page maximum of 7."),
        ("error", "Cannot run `find` on search results page or find results page")]
    assert reply.final == "The manual was not opened."


@pytest.mark.parametrize("recipient, name", [("browser.__dict__", "__dict__"), ("browser.click", "click"),
                                             ("browser", "browser")])
def test_a_call_of_a_function_the_browser_has_not_is_answered_without_asking(docs: Path, recipient: str,
                                                                               name: str) -> None:
    """`to=browser.__dict__` asked the user "Run browser.__dict__ with {}?", and then failed as Unknown function."""
    recording = (f'<|channel|>analysis to={recipient} code<|message|>{{}}<|call|>'
                 '<|channel|>final<|message|>No such function.<|return|>')
    view = Approver()
    reply = Session(ReplayEngine(recording), namespace={}, browser=Browser(docs), tools="browser",
                    approval="ask").ask("Look.", view=view)
    assert view.questions == []
    assert [(c.status, c.output) for c in reply.tool_calls] == [
        ("error", f"Unknown function: {name!r} (the browser has search, open and find)")]
    assert reply.final == "No such function."


def test_a_citation_of_more_digits_than_python_reads_leaves_the_others_resolved() -> None:
    recording = ('<|channel|>analysis to=browser.open code<|message|>{"id": "owls.md"}<|call|>'
                 f'<|channel|>final<|message|>Owls hunt at dusk 【0†L4】, see 【{"9" * 5000}†L1】.<|return|>')
    reply = Session(ReplayEngine(recording), namespace={}, browser=Browser({"owls.md": "# Owls\n\nBarn owls hunt at dusk.\n"}),
                    tools="browser", approval="auto").ask("When do owls hunt?")
    assert reply.errors == []                       # was "The citations could not be read: ValueError: Exceeds the limit
    assert [(c.cursor, c.start, c.text) for c in reply.citations] == [(0, 4, "Barn owls hunt at dusk.")]   # (4300 digits)"


def test_a_marker_written_in_code_is_no_citation_and_no_source() -> None:
    """A marker the model writes in a code span or block (explaining the format) is shown as written, no chip:
    it was still listed under Sources, with the cited lines, as if the answer cited them."""
    recording = ('<|channel|>analysis to=browser.open code<|message|>{"id": "owls.md"}<|call|>'
                 "<|channel|>final<|message|>Owls hunt at dusk 【0†L4】. A citation reads `【0†L2】`:\n\n"
                 "```\n【0†L3】\n```\n\n    【0†L1】<|return|>")
    reply = Session(ReplayEngine(recording), namespace={}, tools="browser", approval="auto",
                    browser=Browser({"owls.md": "# Owls\n\nBarn owls hunt at dusk.\nThey nest in barns.\n"})
                    ).ask("When do owls hunt?")
    assert [(c.marker, c.start) for c in reply.citations] == [("【0†L4】", 4)]
    assert sources_text(reply.citations).count("owls.md") == 1
    shown = with_chips(markdown_html(reply.final), reply.citations)
    assert shown.count("gx-cite") == 1 and "【0†L2】" in shown and "【0†L3】" in shown


def test_a_turn_taken_back_takes_its_pages_back(docs: Path) -> None:
    """rewind/regenerate kept the taken-back turn's pages on the browser's stack: the regenerated answer's cursors
    went on from 3, and a citation of cursor 1 resolved to a page of a turn the model no longer had."""
    session = browsing_session(docs)
    first = session.ask(DEMO_QUESTION)
    assert len(session.browser.stack) == 3 and first.tool_calls[0].output.startswith("[0] ")
    session.rewind()
    assert session.browser.stack == [] and not any(c.url for c in session.browser.citations("See 【1†L4】."))
    session.engine = ReplayEngine(DEMO_RECORDING)  # a recording plays once
    again = session.ask(DEMO_QUESTION)
    assert again.tool_calls[0].output.startswith("[0] ") and len(session.browser.stack) == 3
    session.engine = ReplayEngine(DEMO_RECORDING)
    regenerated = session.regenerate()
    assert regenerated.tool_calls[0].output.startswith("[0] ") and len(session.browser.stack) == 3
    assert [c.cursor for c in regenerated.citations] == [c.cursor for c in first.citations]

    stack = list(session.browser.stack)
    session._turns[-1][1]["effort"] = "max"  # the turn's options no longer valid: its regenerate is refused
    with pytest.raises(TurnError):
        session.regenerate()
    assert session.browser.stack == stack  # the kept turn keeps its pages


def test_a_browser_replaced_mid_conversation_keeps_the_pages_the_model_saw(docs: Path, tmp_path: Path) -> None:
    """`%gptoss browse OTHER` mid-chat made a new browser whose cursors restarted at 0: the history's 【1†L4】 then
    resolved into whatever the next search put at cursor 1."""
    session = browsing_session(docs)
    first = session.ask(DEMO_QUESTION)
    other = demo_folder(tmp_path / "more")
    session.browser = Browser(other)
    assert len(session.browser.stack) == 3
    resolved = session.browser.citations(first.final)
    assert [(c.cursor, c.start, c.text) for c in resolved] == [(c.cursor, c.start, c.text) for c in first.citations]
    session.reset()
    session.browser = Browser(docs)   # a new conversation starts from no pages
    assert session.browser.stack == []


def test_taking_back_a_turn_from_before_the_browser_was_set(docs: Path) -> None:
    """Turns asked before `%gptoss browse` have no browser state to go back to: rewinding past them clears the pages."""
    session = Session(ReplayEngine("<|channel|>final<|message|>Hello.<|return|>"), namespace={}, approval="auto",
                      date="2026-11-25")
    session.ask("Hi")
    session.browser = Browser(docs)
    session.engine = ReplayEngine(DEMO_RECORDING)
    session.ask(DEMO_QUESTION, tools="browser")
    assert len(session.browser.stack) == 3
    session.rewind()
    assert session.browser.stack == []
    session.rewind()   # the first turn: asked with no browser at all
    assert session.browser.stack == [] and session.history == []


def test_stop_ends_a_browser_call_whose_search_function_hangs() -> None:
    """The chat view's Stop was not heard while a browser call ran: a search function of the user's waiting on a
    service that never answers held the turn (and the kernel) until it returned, as a function tool's call does not."""
    import time

    def slow_search(query: str, topn: int) -> list:
        time.sleep(30)   # a service that does not answer
        return []

    class StopsOnceRunning(Approver):
        def __init__(self) -> None:
            super().__init__()
            self.running_since = None

        @property
        def stop_requested(self) -> bool:   # Stop pressed half a second after the call started
            return self.running_since is not None and time.monotonic() - self.running_since > 0.5

        def handle(self, event: object) -> None:
            if isinstance(event, ToolUpdate) and event.call.status == "running":
                self.running_since = time.monotonic()

    recording = ('<|channel|>commentary to=browser.search <|constrain|>json<|message|>{"query": "owls"}<|call|>'
                 '<|channel|>final<|message|>done<|return|>')
    session = Session(ReplayEngine(recording), namespace={}, browser=Browser(search=slow_search), tools="browser",
                      approval="auto", date="2026-11-25")
    started = time.monotonic()
    reply = session.ask("Owls?", view=StopsOnceRunning())
    assert time.monotonic() - started < 10
    assert reply.interrupted and [c.status for c in reply.tool_calls] == ["interrupted"]


@pytest.mark.parametrize("where", ["settings", "ask"])
def test_a_browser_call_ends_at_the_turns_timeout(where: str) -> None:
    """`%%gptoss --tools browser --timeout 2` (the cell's, or the config's) did not bound a browser call: a search
    function of the user's that never answered held the turn (and the kernel) until it returned. It is cut off at
    the timeout as a function tool's call is: the card says timed out, the model reads why, and the turn goes on."""
    import time

    def intranet(query: str, topn: int) -> list:
        time.sleep(30)   # a search service that does not answer
        return []

    recording = ('<|channel|>commentary to=browser.search <|constrain|>json<|message|>{"query": "owls"}<|call|>'
                 '<|channel|>final<|message|>The search timed out.<|return|>')
    timeout = {"timeout": 1} if where == "settings" else {}
    session = Session(ReplayEngine(recording), namespace={}, browser=Browser(search=intranet), tools="browser",
                      approval="auto", date="2026-11-25", **timeout)
    started = time.monotonic()
    reply = session.ask("Owls?", view=Approver(), **({} if timeout else {"timeout": 1}))
    assert time.monotonic() - started < 5
    [call] = reply.tool_calls
    assert (call.status, call.output) == ("timeout", f"Error: ToolTimeout: Timed out after 1 s ({TIMEOUT_HINT})")
    assert reply.final == "The search timed out." and not reply.interrupted and not reply.errors
    assert str(session.history[2].content[0].text) == f"Error: ToolTimeout: Timed out after 1 s ({TIMEOUT_HINT})"   # what the model read


def test_a_search_hit_whose_value_cannot_be_read_is_one_line_and_the_turn_goes_on() -> None:
    """A hit of the user's search function whose URL's str() raised escaped Browser.run as the RuntimeError itself;
    the call is now an error naming the function, what it raised, and what to return, and the turn goes on."""
    class Unreadable:
        def __str__(self) -> str:
            raise RuntimeError("the intranet's id has no text")

    def intranet(query: str, topn: int) -> list:
        return [{"title": "Owls", "url": Unreadable(), "snippet": "Barn owls hunt at dusk."}]

    recording = ('<|channel|>commentary to=browser.search <|constrain|>json<|message|>{"query": "owls"}<|call|>'
                 '<|channel|>final<|message|>The search failed.<|return|>')
    session = Session(ReplayEngine(recording), namespace={}, browser=Browser(search=intranet), tools="browser",
                      approval="auto", date="2026-11-25")
    reply = session.ask("Owls?", view=Approver())
    said = ("Error during search for `owls`: intranet returned a result the browser cannot read (RuntimeError: the "
            "intranet's id has no text); return dicts with title, url and snippet")
    assert [(c.status, c.output) for c in reply.tool_calls] == [("error", said)]   # the card's one line
    assert str(session.history[2].content[0].text) == said                           # what the model read
    assert reply.final == "The search failed." and not reply.errors and not reply.failed
