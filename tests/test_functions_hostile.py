"""User functions, their arguments and return values, response formats and tool lists as a hostile or careless
user or model gives them: each works as pydantic would have it, or is one short line, never a traceback."""
from __future__ import annotations

import contextlib
import datetime
import enum
import functools
import io
import re
import signal
import sys
import threading
import time
from typing import Annotated, Any, Literal

import pydantic
import pytest
from typing_extensions import TypedDict

from gptoss_lab import ReplayEngine, Session, tool
from gptoss_lab.session import TurnError
from gptoss_lab.structured import ResponseFormat, StructuredOutputError
from gptoss_lab.tools.base import Toolset, ToolSpecError
from gptoss_lab.tools.functions import FunctionTool


class _Handle:
    """Not something JSON can carry."""


class Device(enum.Enum):
    PRINTER = _Handle()


Lookaround = Annotated[str, pydantic.StringConstraints(pattern=r"^(?=a)\w+$")]  # pydantic's regex has no look-around


class Code(TypedDict):
    code: Lookaround


def _session(recording: str = "<|channel|>final<|message|>ok<|return|>", **kw: Any) -> Session:
    return Session(ReplayEngine(recording), approval="auto", date="2026-11-25", **kw)


def use_device(device: Device) -> str:
    return "used"


def check(code: Lookaround) -> str:
    return "checked"


@pytest.mark.parametrize("function,shown", [
    (use_device, "use_device.device: the Enum value Device.PRINTER has no JSON form that reads back as it"),
    (check, "check.code: pydantic's Rust regex cannot read the pattern '^(?=a)\\\\w+$' (error: look-around"),
], ids=["enum-of-objects", "look-around-pattern"])
def test_a_parameter_type_pydantic_cannot_build_is_a_one_line_turn_error(function, shown):
    """An Enum whose values JSON cannot write and a pattern pydantic's regex cannot compile raised pydantic's own
    errors (PydanticSerializationError, SchemaError) out of `ask`, a traceback instead of a TurnError."""
    with pytest.raises(TypeError, match="^" + re.escape(shown)):
        FunctionTool(function)
    session = _session(namespace={function.__name__: function}, tools=[function.__name__])
    with pytest.raises(TurnError) as err:
        session.ask("Go.")
    assert str(err.value).startswith(shown) and "\n" not in str(err.value) and len(str(err.value)) < 500


def test_a_response_format_pydantic_cannot_build_is_a_one_line_turn_error():
    with pytest.raises(TurnError) as err:
        _session().ask("Go.", response_format=Code)
    message = str(err.value)
    assert message.startswith("response format: Code: pydantic's Rust regex cannot read the pattern"), message
    assert "look-around" in message and "\n" not in message and len(message) < 500


def test_a_return_value_that_holds_itself_says_the_function_ran():
    """A tree whose nodes point back at their parent: the model was told RecursionError, as if the function had
    failed (and may call it again), while it had run with all its side effects."""
    sent = []

    def send_report(to: str) -> dict:
        sent.append(to)
        root: dict[str, Any] = {"name": "root", "children": []}
        root["children"].append({"name": "leaf", "parent": root})
        return root

    result = FunctionTool(send_report).call('{"to": "boss"}')
    assert sent == ["boss"]
    assert (result.status, result.output) == ("error", "Error: ValueError: the function ran, but JSON cannot write "
                                                        "what it returned: Circular reference detected (id repeated)")


@pytest.mark.parametrize("value,shown", [
    (list(range(100_000)), "tool 'data' (a list) is not callable"),
    ("line one\nline two", "tool 'data' (a str) is not callable"),
])
def test_a_variable_that_is_not_callable_is_named_on_one_short_line(value, shown):
    """`tools=data` naming a big list (or a DataFrame) put its whole repr in the turn error: 688 936 characters."""
    with pytest.raises(TurnError) as err:
        _session(namespace={"data": value}).ask("Go.", tools="python,data")
    message = str(err.value)
    assert message.startswith(shown) and "\n" not in message and len(message) < 200, message[:300]


def test_an_object_given_as_a_tool_is_shown_short_even_when_its_repr_fails():
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    for given in (Unprintable(), list(range(100_000))):
        with pytest.raises(ToolSpecError) as err:
            Toolset.resolve([given], {}, {"python": lambda: None})
        message = str(err.value)
        assert message.startswith("tool ") and " is not callable" in message and len(message) < 200, message[:300]


class Units(enum.Enum):
    C = "celsius"


class Order(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)
    units: Units
    day: datetime.date
    items: tuple[int, int]


def test_a_strict_model_takes_the_json_the_model_writes():
    """Arguments were checked as Python objects: in strict mode an Enum, a date or a tuple is then only an instance
    of it, so every call of this tool failed ("order.units: Input should be an instance of Units")."""
    def place(order: Order, on: Annotated[datetime.date, pydantic.Strict()]) -> str:
        return f"{order.units.name} {order.day} {order.items} {on}"

    result = FunctionTool(place).call('{"order": {"units": "celsius", "day": "2026-11-25", "items": [1, 2]}, '
                                      '"on": "2026-11-26"}')
    assert (result.status, result.output) == ("done", '"C 2026-11-25 (1, 2) 2026-11-26"')
    refused = FunctionTool(place).call('{"order": {"units": "celsius", "day": "2026-11-25", "items": ["1", 2]}, '
                                       '"on": "2026-11-26"}')
    assert (refused.status, refused.output) == ("error", "Error: ValidationError: order.items.0: Input should be a "
                                                         "valid integer")


def test_a_pydantic_field_as_default_describes_checks_and_fills_the_parameter():
    """`limit: int = Field(5, le=50, ...)`, as pydantic.validate_call takes it: its description and limits were not
    shown nor checked (500 ran), and a call leaving it out passed the FieldInfo object itself to the function."""
    def search(query: str = pydantic.Field(description="What to look for."),
               limit: int = pydantic.Field(5, ge=1, le=50, description="How many results.")) -> list:
        return [query, limit]

    search_tool = FunctionTool(search)
    assert search_tool.parameters == {
        "type": "object", "additionalProperties": False, "required": ["query"], "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "description": "How many results.", "default": 5, "minimum": 1, "maximum": 50},
        }}
    assert search_tool.call('{"query": "cats"}').output == '["cats", 5]'
    assert search_tool.call('{"query": "cats", "limit": 500}').output == (
        "Error: ValidationError: limit: Input should be less than or equal to 50")
    assert search_tool.call('{"limit": 2}').output == "Error: ValidationError: query: Field required"


def test_an_integer_too_large_for_a_float_is_refused_like_1e999():
    """pydantic's JSON reader makes a 400-digit integer inf: a float parameter must not get it."""
    def scale(factor: float) -> float:
        return factor

    result = FunctionTool(scale).call('{"factor": 1%s}' % ("0" * 400))
    assert (result.status, result.output) == ("error", f"Error: ValueError: the number 1{'0' * 39} is too large")
    assert FunctionTool(scale).call('{"factor": 1%s}' % ("0" * 300)).output == "1e+300"


def test_an_integer_past_pythons_digit_limit_is_refused_as_too_large():
    """A 5 000-digit argument came back as Python's "Exceeds the limit (4300 digits) ...; use
    sys.set_int_max_str_digits()", advice for the kernel, not the model; a final answer's error said the same."""
    def count(n: int) -> int:
        return n

    result = FunctionTool(count).call('{"n": -1%s}' % ("0" * 5000))
    assert (result.status, result.output) == ("error", f"Error: ValueError: the number -1{'0' * 38} is too large")
    with pytest.raises(StructuredOutputError) as refused:
        ResponseFormat.from_user(int).parse("9" * 5000)
    assert str(refused.value) == f"the final answer is not valid JSON: the number {'9' * 40} is too large"


def test_an_argument_a_partial_fixed_stays_fixed_when_its_tool_is_made_a_tool_again():
    """`tool(notify, name=...)` of a tool made from `partial(send, to="boss")` showed `to` to the model, which could
    then send to anyone."""
    def send(message: str, to: str) -> str:
        return f"sent {message!r} to {to}"

    notify = tool(functools.partial(send, to="boss"), name="notify")
    again = tool(notify, name="notify_boss", description="Tell the boss.")
    assert again.parameters == notify.parameters == {
        "type": "object", "additionalProperties": False, "required": ["message"],
        "properties": {"message": {"type": "string"}}}
    assert again.call('{"message": "hi", "to": "everyone@example.com"}').output == (
        "Error: ValidationError: to: Extra inputs are not permitted")
    assert again.call('{"message": "hi"}').output == "\"sent 'hi' to boss\""


class Mode(enum.Enum):
    FAST = b"fast"


class Span(enum.Enum):
    SHORT = (0, 10)


class Day(enum.Enum):
    LAUNCH = datetime.date(2026, 11, 25)


def _with(annotation: Any) -> Any:
    def send(x: str) -> str:
        """Send."""
        return x

    send.__annotations__ = {"x": annotation, "return": str}
    return send


@pytest.mark.parametrize("annotation,value", [
    (Literal[b"fast", b"slow"], "b'fast'"), (Literal[b"\xff"], "b'\\xff'"), (Mode, "Mode.FAST"),
    (Span, "Span.SHORT"), (Day, "Day.LAUNCH"),
], ids=["bytes-literal", "bytes-literal-not-utf8", "bytes-enum", "tuple-enum", "date-enum"])
def test_a_literal_or_enum_value_no_json_reads_back_as_is_refused_naming_the_parameter(annotation, value):
    # the model was shown "fast" / [0, 10] / "2026-11-25", which the argument check then refused on every call
    # (b"\xff" raised UnicodeDecodeError, a traceback); a response format of it could never parse
    expected = f"send.x: the {'Literal' if value.startswith('b') else 'Enum'} value {value} has no JSON form"
    with pytest.raises(TypeError, match="^" + re.escape(expected)):
        FunctionTool(_with(annotation))
    with pytest.raises(TurnError, match="^response format: .*has no JSON form that reads back as it"):
        _session().ask("Go.", response_format=annotation)
    assert FunctionTool(_with(Literal["fast", 1, True, None])).call('{"x": 1}').output == "1"  # these read back


@pytest.mark.parametrize("pattern", [re.compile(r"^[a-z]+$"), re.compile(r"^[a-z]+$", re.I)], ids=["plain", "flags"])
def test_a_compiled_pattern_is_refused_it_is_matched_by_pythons_re_not_as_shown(pattern):
    # pydantic matched a compiled pattern with Python's re and its flags: the model was shown ^[a-z]+$ while
    # "ABC" and "abc\n" passed the check
    with pytest.raises(TypeError, match=r"^send\.x: the pattern '\^\[a-z\]\+\$' is a compiled re\.Pattern"):
        FunctionTool(_with(Annotated[str, pydantic.Field(pattern=pattern)]))


def test_a_model_matching_its_patterns_with_pythons_re_is_refused():
    class Ticket(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(regex_engine="python-re")
        code: str = pydantic.Field(pattern=r"^[A-Z]{3}\Z")

    with pytest.raises(TypeError, match=r"^send\.x: its config's regex_engine='python-re' matches its patterns"):
        FunctionTool(_with(Ticket))
    with pytest.raises(TurnError, match="^response format: Ticket: its config's regex_engine='python-re'"):
        _session().ask("Go.", response_format=Ticket)


def test_a_python_only_pattern_is_refused_in_one_line_naming_the_pattern():
    # the message held the whole annotation's repr (FieldInfo(annotation=NoneType, required=True, metadata=[...]))
    with pytest.raises(TypeError) as err:
        FunctionTool(_with(Annotated[str, pydantic.Field(pattern=r"^[a-z]+\Z")]))
    assert str(err.value) == ("send.x: pydantic's Rust regex cannot read the pattern '^[a-z]+\\\\Z' (error: "
                              "unrecognized escape sequence); write $ for \\Z (it never matches before a last "
                              "newline), and no look-around or backreferences")


def book(day: datetime.date | int, seats: tuple[int, int] | str, until: datetime.time | None = None) -> str:
    """Book a table on a date (or in N days) for seats (or a party's name)."""
    return f"{day} {seats} {until}"


def test_a_union_parameter_takes_the_json_its_choices_take():
    """A union's choices were validated as Python objects, which strict validation refused where JSON is read: every
    call of `day: date | int` with a date ("2026-11-25") or of `tuple[int, int] | str` with an array came back to the
    model as "Input should be a valid date" and the function never ran."""
    call = ('<|start|>assistant<|channel|>commentary to=functions.book <|constrain|>json<|message|>'
            '{"day": "2026-11-25", "seats": [2, 3], "until": "21:30"}<|call|>')
    reply = _session(call + "<|start|>assistant<|channel|>final<|message|>Booked.<|return|>",
                     namespace={"book": book}, tools=["book"]).ask("Book for Tuesday")
    assert [(c.status, c.output) for c in reply.tool_calls] == [("done", '"2026-11-25 (2, 3) 21:30:00"')]
    refused = FunctionTool(book).call('{"day": true, "seats": [2, "3"]}')
    assert (refused.status, refused.output) == ("error", "Error: ValidationError: day.date: Input should be a valid "
                                                         "date; day.int: Input should be a valid integer; "
                                                         "seats.tuple[int, int].1: Input should be a valid integer; "
                                                         "and 1 more error")


class Purchase:
    """An order of some quantity."""

    def __init__(self, qty: int, note: str = "") -> None:
        self.qty, self.note = qty, note

    def __str__(self) -> str:
        return f"{self.qty} ({self.note})"


class Ticket(pydantic.BaseModel):
    seat: str = pydantic.Field(alias="seatNumber")


def test_a_class_is_a_tool_with_its_signatures_parameters():
    """A class's parameters were looked up in its attributes' annotations: `Purchase` with `__init__(self, qty: int)`
    was "parameter 'qty' has no type annotation", a model with an alias "parameter 'seatNumber' has no type
    annotation"."""
    call = ('<|start|>assistant<|channel|>commentary to=functions.{} <|constrain|>json<|message|>{}<|call|>')
    reply = _session(call.format("Purchase", '{"qty": 2}') + call.format("Ticket", '{"seatNumber": "12A"}') +
                     "<|start|>assistant<|channel|>final<|message|>Done.<|return|>",
                     namespace={"Purchase": Purchase, "Ticket": Ticket}, tools=["Purchase", "Ticket"]).ask("Order two.")
    assert [(c.status, c.output) for c in reply.tool_calls] == [("done", '"<Purchase> 2 ()"'),
                                                                 ("done", '{"seatNumber": "12A"}')]
    assert FunctionTool(Purchase).parameters["properties"] == {"qty": {"type": "integer"},
                                                               "note": {"default": "", "type": "string"}}


def test_a_function_that_swallows_every_exception_in_a_loop_ends_at_the_timeout_and_the_turn_replies():
    """`except BaseException: pass` in a retry loop caught the timeout's every re-raise (379 in 100 s) and held the
    kernel for good: once it swallowed one, each line the function runs raises it, its handlers' lines too; the
    standard library's clean-up still runs (the function's redirected stdout is put back)."""
    tries = []
    stdout = sys.stdout

    def fetch() -> str:
        while True:
            try:
                tries.append(1)
                with contextlib.redirect_stdout(io.StringIO()):
                    time.sleep(0.05)
            except BaseException:
                pass

    recording = ('<|channel|>commentary to=functions.fetch <|constrain|>json<|message|>{}<|call|>'
                 '<|channel|>final<|message|>it timed out<|return|>')
    started = time.perf_counter()
    reply = _session(recording, namespace={"fetch": fetch}).ask("?", tools="fetch", timeout=0.5)
    assert time.perf_counter() - started < 2.5
    assert reply.final == "it timed out"
    assert [(c.status, c.output.split(" (")[0]) for c in reply.tool_calls] == [
        ("timeout", "Error: ToolTimeout: Timed out after 0.5 s")]
    assert sys.gettrace() is None and sys.stdout is stdout  # the tracer that ended it is gone with the call
    count = len(tries)
    time.sleep(0.3)
    assert len(tries) == count   # it has ended


def _swallowing_loop() -> None:
    while True:
        try:
            time.sleep(0.05)
        except BaseException:
            pass


def _nested_swallowing_loops() -> str:
    while True:
        try:
            _swallowing_loop()  # (another frame: its raise is caught here, where tracing was off)
        except BaseException:
            pass


def _two_loops_in_one_frame() -> str:
    while True:
        try:
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass
        except BaseException:
            pass


@pytest.mark.parametrize("function", [_swallowing_loop, _two_loops_in_one_frame])
def test_a_swallowing_loop_called_on_another_thread_ends_at_the_timeout_too(function):
    """Off the main thread (a turn asked on a thread of the user's) a watcher raises the timeout, and `except
    BaseException: pass` caught its every raise: the call never ended. Made in the loop's thread once it swallowed
    one, the timeout traces the loop there too, each of its lines raising it; and again as a handler lets it go (two
    nested loops caught each raise, the inner as the sleep returned, the outer the raise out of the inner's handler)."""
    results = []
    thread = threading.Thread(target=lambda: results.append(FunctionTool(function).call("{}", timeout=0.5)),
                              daemon=True)
    thread.start()
    thread.join(2.5)
    assert [(r.status, r.output.split(" (")[0]) for r in results] == [
        ("timeout", "Error: ToolTimeout: Timed out after 0.5 s")]


@pytest.mark.parametrize("function", [_nested_swallowing_loops, _two_loops_in_one_frame])
def test_swallowing_loops_inside_swallowing_loops_end_at_the_timeout_too(function):
    """A timeout raised out of the inner loop's handler was swallowed by the outer loop's, and the raise had turned the
    tracer off: the alarm is rung again at once, and its raise at the outer loop traces again."""
    started = time.perf_counter()
    result = FunctionTool(function).call("{}", timeout=0.5)
    assert (result.status, time.perf_counter() - started < 2.5) == ("timeout", True)
    assert sys.gettrace() is None


def test_a_thread_a_function_leaves_running_ends_at_the_calls_timeout(capsys, monkeypatch):
    """Swallowing loops on a thread the function started ran on after the call for good, holding a core, whether the
    function returned or waited for it and timed out: the thread is stopped at the call's timeout, in one line (the
    stop's traceback, printed by threading's hook as the thread ended, came into the cell after the Reply too)."""
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)  # a kernel's: it prints (pytest's records)
    threads = []

    def starts(wait: bool) -> str:
        threads.append(threading.Thread(target=_two_loops_in_one_frame, daemon=True))
        threads[-1].start()
        if wait:
            threads[-1].join()
        return "started"

    results = [FunctionTool(starts).call(f'{{"wait": {wait}}}', timeout=0.5) for wait in ("false", "true")]
    assert [result.status for result in results] == ["done", "timeout"]
    for thread in threads:
        thread.join(2)
    assert not any(thread.is_alive() for thread in threads)
    said = "gptoss_lab: 1 thread started by the function starts still ran at the call's 0.5 s timeout: stopped\n"
    err, end = "", time.monotonic() + 1
    while err.count(said) < 2 and time.monotonic() < end:  # (said once the stop is done, a moment after the thread ends)
        time.sleep(0.05)
        err += capsys.readouterr().err
    assert err.count(said) == 2
    assert err == said * 2, err


def _ignores_the_alarm() -> str:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    for _ in range(150):   # (bounded: it ran on, untimed, as long as its loop went)
        time.sleep(0.01)
    return "looped"


def _times_itself() -> str:
    signal.signal(signal.SIGALRM, lambda signum, frame: None)   # as `signal.alarm`-based timeouts of libraries do
    signal.setitimer(signal.ITIMER_REAL, 10)
    time.sleep(0.6)   # a blocking call: the timeout reaches it only when it returns
    return "slept"


@pytest.mark.parametrize("function,status,took", [(_ignores_the_alarm, "timeout", 1.0), (_times_itself, "done", 1.0)])
def test_a_function_that_takes_the_alarm_over_is_still_timed_out_and_said_to(function, status, took):
    """A user's function that ignored SIGALRM, or set its own handler and timer, ran on past its timeout for good, the
    turn never ending, and nothing said so: its timeout is raised into it from another thread where it runs Python,
    the call's output says so in a line, and the kernel's alarm is as it was."""
    started = time.perf_counter()
    result = FunctionTool(function).call("{}", timeout=0.3)
    assert (result.status, time.perf_counter() - started < took) == (status, True)
    assert re.fullmatch(r"\[The call took the lab's timer over \(SIGALRM's handler or the real-time timer\): its 0.3 s "
                        r"timeout was raised into it from another thread, which reaches it only where it runs Python "
                        r"\(it ran 0\.\d s\)\]", result.output.splitlines()[-1]), result.output
    assert (signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)) == (signal.SIG_DFL, (0.0, 0.0))


@pytest.mark.parametrize("code", [
    "import threading, time\nthreading.Thread(target=time.sleep, args=(0.3,)).start()",  # ends during the function
    "import signal, threading, time\ndef clear():\n    while True:\n        signal.setitimer(signal.ITIMER_REAL, 0)\n"
    "        time.sleep(0.01)\nthreading.Thread(target=clear, daemon=True).start()",
], ids=["a thread that ends", "a thread that clears the timer"])
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # refused: a SystemExit, unsaid
def test_a_thread_the_python_code_left_running_cannot_stop_a_later_functions_timeout(code):
    """A function called after a python call that left a thread running ran on past its timeout, unbounded: the guards,
    taken out as that thread ended, cleared the real-time timer, by then the function's deadline's; and the thread
    could clear it itself (`signal.setitimer(signal.ITIMER_REAL, 0)`)."""
    def wait() -> str:
        for _ in range(60):
            time.sleep(0.05)
        return "waited"

    recording = ("<|channel|>analysis<|message|>x<|end|><|start|>assistant to=python<|channel|>analysis<|message|>"
                 + code + "<|call|><|channel|>commentary to=functions.wait <|constrain|>json<|message|>{}<|call|>"
                 "<|channel|>final<|message|>done<|return|>")
    started = time.perf_counter()
    reply = _session(recording, namespace={"wait": wait}).ask("?", tools="python,wait", timeout=0.6)
    assert [c.status for c in reply.tool_calls] == ["done", "timeout"]
    assert time.perf_counter() - started < 2.5


class _Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def _unsayable() -> None:
    raise _Unsayable


def test_an_annotation_failing_with_an_unreadable_message_is_the_one_line_type_error():
    """A string annotation whose evaluation raised an exception with an unreadable message (its __str__ raising) gave
    that RuntimeError, not the one-line TypeError a tool list turns into a TurnError."""
    def lookup(key: "_unsayable()") -> int:  # noqa: F821
        return 1

    with pytest.raises(TypeError) as error:
        FunctionTool(lookup)
    assert str(error.value) == "lookup: cannot resolve a type annotation (_Unsayable: its message could not be read)"
