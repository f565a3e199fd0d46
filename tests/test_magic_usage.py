"""A mistyped command, option or setting names what was meant, in the one-line UsageError the user reads."""
from __future__ import annotations

import shlex

import pytest
from IPython.core.error import UsageError

from gptoss_lab.magics import _cell_parser, _line_parser, _words

CASES = [
    ("%gptoss", "lod tiny", "invalid choice: 'lod' (choose from", ": did you mean 'load'?"),
    ("%gptoss", "staus", "invalid choice: 'staus'", ": did you mean 'status'?"),
    ("%gptoss", "load tiny --devise cpu", "unrecognized arguments: --devise", ": did you mean '--device'?"),
    ("%gptoss", "history --exprot", "unrecognized arguments: --exprot", ": did you mean '--export'?"),
    # the command's own options, not another command's (--export is history's)
    ("%gptoss", "load --exprot", "unrecognized arguments: --exprot", " (see %gptoss load --help)"),
    # config takes KEY=VALUE: the CLI habit is answered with the setting as it is written
    ("%gptoss", "config --effort high", "unrecognized arguments: --effort",
     ": settings are KEY=VALUE, did you mean 'effort=high'?"),
    ("%gptoss", "config --max-tokens 64", "unrecognized arguments: --max-tokens",
     ": settings are KEY=VALUE, did you mean 'max_tokens=64'?"),
    ("%gptoss", "config --seed=3", "unrecognized arguments: --seed=3", ": settings are KEY=VALUE, did you mean 'seed=3'?"),
    ("%gptoss", "config --approve", "unrecognized arguments: --approve",
     ": settings are KEY=VALUE, did you mean 'approve=...'?"),
    ("%%gptoss", "--efort high", "unrecognized arguments: --efort high", ": did you mean '--effort'?"),
    ("%%gptoss", "--aprove auto", "unrecognized arguments: --aprove auto", ": did you mean '--approve'?"),
    # written with its value after `=` (nothing was near `--efort=high`)
    ("%%gptoss", "--efort=high", "unrecognized arguments: --efort=high", ": did you mean '--effort'?"),
    ("%gptoss", "load tiny --devise=cpu", "unrecognized arguments: --devise=cpu", ": did you mean '--device'?"),
    # a cell's option, a question or a command's help on the wrong line: where it goes
    ("%gptoss", "What is 2+2?", "invalid choice: 'What'", ": to ask, write the question on the lines below a %%gptoss"),
    ("%gptoss", "help load", "unrecognized arguments: load", ": for one command's help, `%gptoss load --help`"),
    # a question whose first word is a command's name, in any case, is a question ("did you mean 'history'?")
    ("%gptoss", "History of the Roman empire", "invalid choice: 'History'", ": to ask, write the question on the"),
    ("%gptoss", "Use numpy to find the mean", "invalid choice: 'Use'", ": to ask, write the question on the lines"),
    ("%%gptoss", "What is 2+2?", "unrecognized arguments: What is 2+2?",
     ": the question goes on the lines below %%gptoss, not on its line"),
    # a shortened option, command or choice is not taken for the one it starts (argparse's prefix matching read
    # `--dev cpu` as --device and `--con` as --constrain): it names it
    ("%gptoss", "load tiny --dev cpu", "unrecognized arguments: --dev cpu", ": did you mean '--device'?"),
    ("%gptoss", "load --dt float32", "unrecognized arguments: --dt", ": did you mean '--dtype'?"),
    ("%gptoss", "history --exp", "unrecognized arguments: --exp", ": did you mean '--export'?"),
    ("%gptoss", "connect http://h:8000 --ret 3", "unrecognized arguments: --ret 3", ": did you mean '--retries'?"),
    ("%gptoss", "lo tiny", "invalid choice: 'lo'", ": did you mean 'load'?"),
    ("%%gptoss", "--eff high", "unrecognized arguments: --eff high", ": did you mean '--effort'?"),
    ("%%gptoss", "--con", "unrecognized arguments: --con", ": did you mean '--constrain'?"),
    ("%%gptoss", "--appr ask", "unrecognized arguments: --appr ask", ": did you mean '--approve'?"),
    ("%%gptoss", "--temp 0.5", "unrecognized arguments: --temp 0.5", ": did you mean '--temperature'?"),
    ("%%gptoss", "--effort hi", "invalid choice: 'hi'", ": did you mean 'high'?"),
    # a value given to an option that takes none (argparse: "ignored explicit argument 'yes'")
    ("%%gptoss", "--routing=yes", "--routing takes no value, not 'yes': write --routing alone", " (see %%gptoss --help)"),
    ("%gptoss", "load tiny --dequantize=true", "--dequantize takes no value, not 'true': write --dequantize alone",
     " (see %gptoss load --help)"),
    # a command's required word or an option's value left out: what to write
    ("%gptoss", "connect", "the following arguments are required: url",
     ": for example `%gptoss connect http://127.0.0.1:8000 --api-key-env OPENAI_API_KEY`"),
    ("%gptoss", "use", "the following arguments are required: variable", ": for example `%gptoss use s` (see"),
    ("%gptoss", "browse", "the following arguments are required: source", ": for example `%gptoss browse ~/papers` (see"),
    ("%%gptoss", "-e", "argument --effort/--reasoning/-e: expected one argument", ": write --effort low|medium|high"),
    ("%%gptoss", "--max-tokens", "argument --max-tokens: expected one argument", ": write --max-tokens N"),
    ("%gptoss", "load tiny --device", "argument --device: expected one argument", ": write --device DEVICE"),
    # nothing near: no guess
    ("%gptoss", "zzz", "invalid choice: 'zzz'", " (see %gptoss --help)"),
    ("%%gptoss", "--xyz", "unrecognized arguments: --xyz", " (see %%gptoss --help)"),
]


@pytest.mark.parametrize("magic,line,said,then", CASES, ids=[line for _, line, _, _ in CASES])
def test_a_mistake_names_what_was_meant(magic, line, said, then):
    parser = _line_parser() if magic == "%gptoss" else _cell_parser()
    with pytest.raises(UsageError) as error:
        parser.parse_args(_words(line))
    message = str(error.value)
    prog = message.rsplit(" (see ", 1)[-1].removesuffix(" --help)")   # the command whose help it points to
    assert message.startswith(f"{prog}: ") and prog.startswith(magic) and len(message.splitlines()) == 1
    assert said in message and then in message and message.index(said) < message.index(then), message
    assert message.endswith(" --help)")
    assert ("did you mean" in message) is ("did you mean" in then), message


CELL_OPTIONS = ["--effort high", "-e high", "--routing", "-r", "--ablate 1:3", "load tiny --effort high", "routing --new"]


@pytest.mark.parametrize("line", CELL_OPTIONS)
def test_a_cell_option_on_the_line_magic_says_where_it_goes(line):
    """`%gptoss --routing` was answered "did you mean 'routing'?" (the command that shows the last record, not the
    option that records one), and `%gptoss --effort high` led with argparse's 13 command names: the one line now
    names the option and where it goes."""
    option = next(word for word in line.split() if word.startswith("-"))
    with pytest.raises(UsageError) as error:
        _line_parser().parse_args(_words(line))
    # the setting that holds for every cell, when there is one: `config routing=on` was advised, and refused
    every = " (`%gptoss config effort=VALUE` sets it for every cell)" if option in ("--effort", "-e") else ""
    assert str(error.value) == (f"%gptoss: {option} is an option of a %%gptoss cell: it goes on the cell's first "
                                f"line, above the question{every} (see %%gptoss --help)")


@pytest.mark.parametrize("line,help_of", [("routing extra", "%gptoss routing"), ("load tiny extra", "%gptoss load"),
                                          ("connect http://h:1 --timeout abc", "%gptoss connect"),
                                          ("lod tiny", "%gptoss"), ("help load", "%gptoss")])
def test_a_mistake_in_a_command_points_to_that_commands_help(line, help_of):
    with pytest.raises(UsageError) as error:
        _line_parser().parse_args(_words(line))
    assert str(error.value).endswith(f" (see {help_of} --help)"), str(error.value)


@pytest.mark.parametrize("magic,line", [("%%gptoss", "--approve maybe"), ("%%gptoss", "--effort extreme"),
                                        ("%gptoss", "load tiny extra"), ("%gptoss", "reset now")])
def test_a_wrong_value_or_a_stray_word_is_not_taken_for_a_question(magic, line):
    """The question was already below the magic line: the error names the value or word, and no misplaced question."""
    parser = _line_parser() if magic == "%gptoss" else _cell_parser()
    with pytest.raises(UsageError) as error:
        parser.parse_args(_words(line))
    message = str(error.value)
    assert line.split()[-1] in message and message.endswith(" --help)"), message
    assert "question" not in message and "did you mean" not in message, message


@pytest.mark.parametrize("magic,line,dashed,option,prog", [
    ("%gptoss", "load —device cpu", "—device", "--device", "%gptoss load"),
    ("%gptoss", "load —dequantize", "—dequantize", "--dequantize", "%gptoss load"),
    ("%gptoss", "connect http://h:1 –timeout=5", "–timeout", "--timeout", "%gptoss connect"),
    ("%%gptoss", "—effort high", "—effort", "--effort", "%%gptoss"),
])
def test_an_option_written_with_a_long_dash_says_so(magic, line, dashed, option, prog):
    """Word processors, chats and web pages turn `--` into a long dash (—, –): a command copied from one said
    "unrecognized arguments: cpu" for `load —device cpu` and loaded nothing, and `load —dequantize` looked for a
    checkpoint folder named '—dequantize'."""
    parser = _line_parser() if magic == "%gptoss" else _cell_parser()
    with pytest.raises(UsageError) as error:
        parser.parse_args(_words(line))
    assert str(error.value) == (f"{prog}: {dashed} starts with a long dash ({dashed[0]}), not two hyphens: write "
                                f"{option} (see {prog} --help)")


@pytest.mark.parametrize("magic,line,dashed,option,prog", [
    ("%%gptoss", "－－effort high", "－－effort", "--effort", "%%gptoss"),   # full-width, as CJK keyboards write it
    ("%gptoss", "load tiny −−device=cpu", "−−device", "--device", "%gptoss load"),   # minus signs
])
def test_an_option_written_with_other_dashes_says_so(magic, line, dashed, option, prog):
    """`%%gptoss －－effort high` (full-width hyphens) said "the question goes on the lines below %%gptoss", and
    `load tiny −−device=cpu` only "unrecognized arguments": each now says which option was meant, as a long dash does."""
    parser = _line_parser() if magic == "%gptoss" else _cell_parser()
    with pytest.raises(UsageError) as error:
        parser.parse_args(_words(line))
    assert str(error.value) == (f"{prog}: {dashed} starts with a dash that is not a hyphen ({dashed[0]}), not two "
                                f"hyphens: write {option} (see {prog} --help)")


def test_a_value_that_starts_with_a_long_dash_but_names_no_option_is_a_value():
    assert _line_parser().parse_args(_words("load —notes")).model == "—notes"


def test_a_cells_error_reads_the_same_with_a_model_loaded_or_not(capsys):
    """Before a model was loaded `%%gptoss --tools python,python` said `%%gptoss: the tool 'python' is listed twice`;
    with one loaded the same cell said it without `%%gptoss:`, and an --ablate the model refused read
    `intervention (--ablate): ...` where a bad --ablate read `%%gptoss: --ablate ...`. Each starts with `%%gptoss: `."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()

    def said(line: str) -> str:
        with pytest.raises(UsageError) as error:
            shell.run_cell_magic("gptoss", line, "What is 2+2?")
        return str(error.value)

    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        before = said("--tools python,python")
        shell.run_cell("from gptoss_lab import Session, ReplayEngine\n"
                       "s = Session(ReplayEngine('<|channel|>final<|message|>4<|return|>'))")
        shell.run_line_magic("gptoss", "use s")
        assert said("--tools python,python") == before == "%%gptoss: the tool 'python' is listed twice: write 'python'"
        assert said("--ablate 1:3").startswith("%%gptoss: intervention (--ablate): this needs a gpt-oss model")
        assert said("--ablate=,,") == "%%gptoss: --ablate needs LAYER:EXPERT pairs, e.g. --ablate 1:3,2:5"
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace


ELSEWHERE = [
    # another command's option in a cell was "the question goes on the lines below" (`cpu` taken for a question) or
    # "did you mean '--effort'?"; a stray option after an option's value was a misplaced question too (`never`)
    ("%%gptoss", "--approve never --device cpu", "unrecognized arguments: --device cpu: --device is an option of "
                                                 "`%gptoss load` and `%gptoss doctor`, not of a %%gptoss cell (see "
                                                 "%%gptoss --help)"),
    ("%%gptoss", "--approve never --export", "unrecognized arguments: --export: --export is an option of "
                                             "`%gptoss history`, not of a %%gptoss cell (see %%gptoss --help)"),
    ("%%gptoss", "--approve never --xyz", "unrecognized arguments: --xyz (see %%gptoss --help)"),
    ("%%gptoss", "--approve never --exprot", "unrecognized arguments: --exprot (see %%gptoss --help)"),  # not --text
    # a line command in a cell was a misplaced question
    ("%%gptoss", "load tiny", "unrecognized arguments: load tiny: `load tiny` is a command of the line magic: write "
                              "`%gptoss load tiny`, one % (see %%gptoss --help)"),
    ("%gptoss", "load --model tiny", "unrecognized arguments: --model: the model is written without --model: "
                                     "`%gptoss load tiny` (see %gptoss load --help)"),
    ("%gptoss", "connect http://h:1 --device cpu", "unrecognized arguments: --device cpu: --device is an option of "
                                                   "`%gptoss load` and `%gptoss doctor` (see %gptoss connect "
                                                   "--help)"),
    # the word in another case is the one meant (LOAD was told to write a question below a %%gptoss line)
    ("%gptoss", "LOAD tiny", "argument COMMAND: invalid choice: 'LOAD' (choose from 'help', 'load', 'connect', 'use', "
                             "'unload', 'status', 'reset', 'regenerate', 'history', 'config', 'routing', 'browse', "
                             "'doctor'): did you mean 'load'? (see %gptoss --help)"),
    ("%%gptoss", "--effort HIGH", "argument --effort/--reasoning/-e: invalid choice: 'HIGH' (choose from 'low', "
                                  "'medium', 'high'): did you mean 'high'? (see %%gptoss --help)"),
]


@pytest.mark.parametrize("magic,line,said", ELSEWHERE, ids=[line for _, line, _ in ELSEWHERE])
def test_a_word_that_belongs_elsewhere_says_where(magic, line, said):
    parser = _line_parser() if magic == "%gptoss" else _cell_parser()
    with pytest.raises(UsageError) as error:
        parser.parse_args(_words(line))
    prog = said.rsplit(" (see ", 1)[-1].removesuffix(" --help)")   # the command whose help it points to
    assert prog.startswith(magic) and str(error.value) == f"{prog}: {said}"


def test_a_path_with_spaces_left_unquoted_is_answered_with_the_quoted_path(tmp_path):
    """`%gptoss browse ~/My Papers` said "no such file or folder: ~/My" and `%gptoss load ~/my model` "unrecognized
    arguments: model", leaving the reader to guess that the line was split at the space; each now ends with the
    path in quotes, which works."""
    from IPython.core.interactiveshell import InteractiveShell

    from gptoss_lab.tools.browser import demo_folder

    folder = demo_folder(tmp_path / "my papers")
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for line in (f"browse {folder}", f"load {folder}", f"doctor {folder}"):
            with pytest.raises(UsageError) as error:
                shell.run_line_magic("gptoss", line)
            message = str(error.value)
            assert len(message.splitlines()) == 1 and message.endswith(f'a path with spaces goes in quotes: "{folder}"')
        shell.run_line_magic("gptoss", f'browse "{folder}"')   # as the message says: the documents are read
        assert shell.magics_manager.registry["GptossMagics"]._kept().browser.describe().startswith("4 documents")
    finally:
        InteractiveShell.clear_instance()


BAD_CONFIGS = [   # config.json as written, and what the one line says is wrong with it
    ("{not json", "config.json is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1))"),
    ("[1, 2]", "config.json holds a list, not an object of settings"),
    ('{"hidden_size": 128}', "model_type is missing (it must be 'gpt_oss')"),
    ('{"model_type": "gpt_oss", "hidden_size": "128"}', "hidden_size must be a positive whole number, not '128'"),
    ('{"model_type": "gpt_oss", "num_local_experts": 4.5}', "num_local_experts must be a positive whole number, not 4.5"),
]


@pytest.mark.parametrize("text,wrong", BAD_CONFIGS, ids=["not-json", "list", "no-model-type", "string", "float"])
def test_a_bad_config_json_is_one_line_of_one_rule(tmp_path, text, wrong):
    """`%gptoss load ./folder` with a bad config.json said "could not read the config of ...: It looks like the config
    file at ... is not a valid JSON file.", "... is an unknown model", or transformers' "Validation error for field
    'hidden_size': TypeError: Field 'hidden_size' expected int, got str (value: '128')", as the file was bad: one rule
    now, for load and doctor alike, naming the folder, its config.json and what is wrong."""
    from IPython.core.interactiveshell import InteractiveShell

    (tmp_path / "config.json").write_text(text)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for command in ("load", "doctor"):
            with pytest.raises(UsageError) as error:
                shell.run_line_magic("gptoss", f"{command} {tmp_path}")
            assert str(error.value) == f"%gptoss {command}: the config of {tmp_path} is not a valid gpt-oss config: {wrong}"
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("value", ["sk-proj-Zq81xKeyPasted", "x" * 300, "\x1b]0;pwned\x07"], ids=["key", "long", "escape"])
def test_a_hint_names_the_option_not_a_value_unfit_to_quote(value):
    """`%gptoss connect --url VALUE` hinted "`%gptoss connect VALUE`" whatever VALUE was: a key pasted there, a page
    pasted by mistake, a terminal escape. Such a value is named (URL); a short plain one is still quoted to copy."""
    for line, hint in ((f"connect --url {shlex.quote(value)}", "`%gptoss connect URL`"),
                       ("connect --url http://h:1", "`%gptoss connect http://h:1`")):
        with pytest.raises(UsageError) as error:
            _line_parser().parse_args(_words(line))
        assert str(error.value) == (f"%gptoss connect: unrecognized arguments: --url: the url is written without --url: {hint} "
                                    "(see %gptoss connect --help)")


def test_an_error_quotes_a_long_value_cut_short_and_escapes_written_out():
    """`%gptoss config effort=<a page pasted by mistake>` quoted the page back whole, and `%gptoss browse` a folder
    name's terminal escape (`\\x1b]0;...`) raw, which a terminal obeys: the error shows the value's first 40
    characters, and control characters written out."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    errors = []
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for line in ("config effort=" + "x" * 5000, "browse /nowhere/\x1b]0;pwned\x07"):
            with pytest.raises(UsageError) as error:
                shell.run_line_magic("gptoss", line)
            errors.append(str(error.value))
    finally:
        InteractiveShell.clear_instance()
    assert errors == ["%gptoss config: effort must be 'low', 'medium' or 'high', not '" + "x" * 40 + "…'",
                      "%gptoss browse: no such file or folder: /nowhere/\\x1b]0;pwned\\x07"]


@pytest.mark.parametrize("magic,line,meant", [
    ("%gptoss", "ｌｏａｄ tiny", ": did you mean 'load'? (see %gptoss --help)"),   # was "to ask, write the question..."
    ("%%gptoss", "--effort ｈｉｇｈ", ": did you mean 'high'? (see %%gptoss --help)"),
    ("%gptoss", "config EFFORT=high", " (did you mean effort?)"),
    ("%gptoss", "config ｅｆｆｏｒｔ=high", " (did you mean effort?)"),
    ("%gptoss", "config effort=ｈｉｇｈ", " (did you mean 'high'?)"),
    ("%gptoss", "config approve=ＡＳＫ", " (did you mean 'ask'?)"),
])
def test_a_word_in_capitals_or_full_width_names_the_word_meant(magic, line, meant):
    """A command, setting or value typed in capitals (`config EFFORT=high`) or full-width letters (a CJK keyboard's
    `ｌｏａｄ`) was refused with no suggestion, `ｌｏａｄ tiny` even told to write a question below a %%gptoss line:
    each names the word meant, as `LOAD` and `effort=hihg` did."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with pytest.raises(UsageError) as error:
            shell.run_line_magic("gptoss", line) if magic == "%gptoss" else shell.run_cell_magic("gptoss", line, "Hi")
    finally:
        InteractiveShell.clear_instance()
    assert str(error.value).endswith(meant) and len(str(error.value).splitlines()) == 1, str(error.value)


def test_the_help_of_config_and_of_a_cell_says_the_settings_a_model_starts_with(capsys):
    """`%gptoss config --help` gave `effort=high approve=auto timeout=60` as examples and `%%gptoss --help` said an
    option left out "takes the setting" without what it is: neither said that effort is medium, approval ask."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shell.run_line_magic("gptoss", "config --help")
        config = capsys.readouterr().out
        shell.run_cell_magic("gptoss", "--help", "\n")   # (the body a front end gives the cell: help_cells)
        cell = capsys.readouterr().out.split("options:")[0]   # the cell's own part, before its options
    finally:
        InteractiveShell.clear_instance()
    for start in ("effort=medium", "approve=ask", "timeout=120", "max_tokens=2048", "tools=python", "guard=on"):
        assert start in " ".join(config.split()) and start in " ".join(cell.split()), start
    # wrapped as every command's help is (the cell's description was two lines, the second of 300 characters)
    assert max(map(len, cell.splitlines())) <= 80 and max(map(len, config.splitlines())) <= 80, cell


@pytest.mark.parametrize("line,meant", [("disconnect", "unload"), ("clear", "reset"), ("export", "history --export"),
                                        ("Disconnect", "unload")])
def test_another_tools_word_for_a_command_names_the_command_meant(line, meant):
    """`%gptoss disconnect` was answered "did you mean 'connect'?", its opposite by spelling; `clear` and `export`
    had no suggestion at all."""
    with pytest.raises(UsageError) as error:
        _line_parser().parse_args(_words(line))
    assert str(error.value).endswith(f": did you mean '{meant}'? (see %gptoss --help)"), str(error.value)


@pytest.mark.parametrize("line,meant", [("config instructions=Answer in French", "instructions='Answer in French'"),
                                        ("config tools=python, double", "tools='python, double'"),
                                        ("config effort=high tools=python, double", "tools='python, double'"),
                                        ('config instructions=Say "hi" to me', "instructions='Say \"hi\" to me'"),
                                        ("config instructions=Say 'hi' to me", 'instructions="Say \'hi\' to me"')])
def test_a_text_setting_written_with_spaces_and_no_quotes_is_answered_quoted(line, meant):
    """`%gptoss config instructions=Answer in French` said only "expected KEY=VALUE ...; got 'in'", leaving the reader
    to guess that the line was split at its spaces: the error ends with the setting quoted, which works and gives
    back the text as typed (`Say "hi" to me` was suggested as 'Say hi to me', its quotes lost)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shell.run_cell("def double(x: int) -> int:\n    'Twice x.'\n    return 2 * x")
        with pytest.raises(UsageError) as error:
            shell.run_line_magic("gptoss", line)
        assert str(error.value).endswith(f" (did you mean {meant}?)"), str(error.value)
        shell.run_line_magic("gptoss", f"config {meant}")   # as the message says: taken
        key, value = meant.split("=", 1)
        kept = getattr(shell.magics_manager.registry["GptossMagics"]._kept().settings, key)
        assert kept == shlex.split(value)[0] == line.partition(f"{key}=")[2]   # the text as it was typed
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("line,meant", [("config effort= high", "effort=high"), ("config seed= 3 effort=low", "seed=3"),
                                        ("config instructions= Be brief", "instructions='Be brief'")])
def test_a_space_after_a_settings_equals_sign_is_answered_with_the_pair_written_whole(line, meant):
    """`%gptoss config effort= high` said only "expected KEY=VALUE ...; got 'high'", with no word of the space after
    `=` that split the pair (and `instructions= Be brief` suggested the text with that space kept): the error ends with
    the pair as it is taken."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with pytest.raises(UsageError) as error:
            shell.run_line_magic("gptoss", line)
        assert str(error.value).endswith(f" (did you mean {meant}?)"), str(error.value)
        shell.run_line_magic("gptoss", f"config {meant}")   # as the message says: taken
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("line", ["browse /tmp/sk-proj-Zq81xKeyPasted1234/docs", "load /tmp/sk-proj-Zq81xKeyPasted1234/m",
                                  "doctor ./sk-proj-Zq81xKeyPasted1234", "browse '/tmp/sk-proj-Zq81xKeyPasted1234/My Papers'",
                                  "connect --url=https://sk-proj-Zq81xKeyPasted1234.example/v1",
                                  "connect --url=http://h:1/v1?a=1&key=sk-proj-Zq81xKeyPasted1234"])
def test_a_key_in_a_path_segment_is_not_shown(line):
    """`%gptoss browse /tmp/sk-proj-.../docs` said "no such file or folder: /tmp/sk-proj-.../docs", the key pasted in
    the path quoted back into the saved notebook (only whole words and `=` values were checked), and a key in a URL's
    host name or its query's second value the same: that part is `…`."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with pytest.raises(UsageError) as error:
            shell.run_line_magic("gptoss", line)
    finally:
        InteractiveShell.clear_instance()
    message = str(error.value)
    assert "Zq81x" not in message and "…" in message and len(message.splitlines()) == 1, message
    assert "is not shown: it looks like an API key" in message


def test_a_folder_named_in_words_and_numbers_is_still_shown():
    """Only a segment with a key's random run of letters and digits is hidden: a folder named in words is the path
    the user needs to read to correct the line."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with pytest.raises(UsageError) as error:
            shell.run_line_magic("gptoss", "browse /tmp/run_2024_final_model_v2/docs")
    finally:
        InteractiveShell.clear_instance()
    assert str(error.value) == "%gptoss browse: no such file or folder: /tmp/run_2024_final_model_v2/docs"


@pytest.mark.parametrize("line,hint", [("connect --url=http://h:1", "`%gptoss connect http://h:1`"),
                                       ("connect --url", "`%gptoss connect URL`"),
                                       ("connect --url=sk-proj-Zq81xKeyPasted", "`%gptoss connect URL`")])
def test_a_required_value_written_as_an_option_says_how_to_write_it(line, hint):
    """`%gptoss connect --url=http://h:1` said only "the following arguments are required: url" where `connect --url
    http://h:1` was told the url is written without --url: the `=` form (and a bare --url) gets the same hint."""
    with pytest.raises(UsageError) as error:
        _line_parser().parse_args(_words(line))
    assert str(error.value) == (f"%gptoss connect: the following arguments are required: url: the url is written "
                                f"without --url: {hint} (see %gptoss connect --help)")


def test_a_cells_output_name_that_ipython_writes_is_refused():
    """`%%gptoss -o _` was taken, and IPython's next output overwrote the reply kept in `_` (as `_1` and `_i3` are
    written after each output and input): each such name is refused in one line, before the turn runs."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shell.run_cell("from gptoss_lab import Session, ReplayEngine\n"
                       "s = Session(ReplayEngine('<|channel|>final<|message|>4<|return|>'))")
        shell.run_line_magic("gptoss", "use s")
        for name in ("_", "__", "___", "_1", "_42", "_i", "_ii", "_iii", "_i3", "_ih", "_oh", "exit", "quit"):
            with pytest.raises(UsageError) as error:
                shell.run_cell_magic("gptoss", f"--text -o {name}", "What is 2+2?")
            assert str(error.value) == f"%%gptoss -o: {name} belongs to IPython; choose another name"
        assert shell.user_ns["s"].replies == []
    finally:
        InteractiveShell.clear_instance()


def test_an_unknown_option_of_every_command_is_said_by_that_command():
    """`%gptoss connect URL --bogus` began "%gptoss: unrecognized arguments" (the command's own errors name it), and
    `%gptoss help --bogus` advised "`%gptoss --bogus --help`"."""
    parser = _line_parser()
    for name, command in parser._subparsers._group_actions[0].choices.items():
        needed = ["x" for action in command._actions if not action.option_strings and action.required]
        with pytest.raises(UsageError) as error:
            parser.parse_args([name, *needed, "--bogus"])
        prog = "%gptoss" if name == "help" else command.prog
        assert str(error.value) == f"{prog}: unrecognized arguments: --bogus (see {prog} --help)"


def test_a_usage_error_stays_one_line_whatever_the_typed_line_holds():
    """A quoted value holding a newline (`'x<newline>UsageError: fake'`) or a U+2028 was quoted back raw: the one-line
    usage error became two lines, the second of the typist's choosing. Line breaks are written out as control
    characters are."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    errors = []
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for line in ("history --export 'x\nUsageError: fake'", "status a\u2028b"):
            with pytest.raises(UsageError) as error:
                shell.run_line_magic("gptoss", line)
            errors.append(str(error.value))
    finally:
        InteractiveShell.clear_instance()
    assert errors == ["%gptoss history: unrecognized arguments: x\\nUsageError: fake (see %gptoss history --help)",
                      "%gptoss status: unrecognized arguments: a\\u2028b (see %gptoss status --help)"]


class _Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


class _Lazy:
    @property
    def data(self) -> str:
        raise _Unsayable


def test_a_field_whose_error_has_no_readable_message_is_one_usage_line():
    """`{x.data}` whose property raised an exception with an unreadable message (its __str__ raising) gave that
    RuntimeError's traceback: the usage error says the message could not be read."""
    from gptoss_lab.magics import interpolate

    with pytest.raises(UsageError) as error:
        interpolate("What is {x.data}?", {"x": _Lazy()})
    assert str(error.value) == ("%%gptoss: {x.data} cannot be filled in (_Unsayable: its message could not be read); "
                                "write {{x.data}} for the text itself")


def test_ctrl_c_in_a_long_command_is_one_line_and_changes_nothing(tmp_path, random_checkpoint, monkeypatch, capsys,
                                                                  ctrl_c_raises):
    """Ctrl-C (the kernel's interrupt) while `%gptoss load` reads the weights or `browse` the documents was a traceback
    through transformers or a document parser that said neither what stopped nor what was kept; now one line says
    both, the lab is as it was, and what the stopped work held (a half-loaded model's weights) is let go: the
    Ctrl-C, kept as the one line's context in sys.last_value, held it until the next error."""
    import gc
    import signal
    import weakref

    from IPython.core.interactiveshell import InteractiveShell

    from gptoss_lab.engines import checkpoint
    from gptoss_lab.tools.browser import demo_folder, local

    held = []   # what each stopped command's work held, weakly

    def pressed(real):
        def press(*args, **kw):
            weights = type("Weights", (), {})()   # stands for what the interrupted work held
            held.append(weakref.ref(weights))
            signal.raise_signal(signal.SIGINT)   # the user's Ctrl-C, half-way through the command's work
            return real(*args, **kw)
        return press

    non_finite = checkpoint.non_finite
    monkeypatch.setattr(checkpoint, "non_finite", pressed(non_finite))
    monkeypatch.setattr(local, "_read", pressed(local._read))
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for line, said in ((f"load {random_checkpoint}", "nothing was loaded"),
                           (f"browse {demo_folder(tmp_path / 'docs')}", "the browser reads what it read before")):
            capsys.readouterr()
            shell.run_cell(f"%gptoss {line}")
            command = line.split()[0]
            assert capsys.readouterr().out.rstrip().rpartition("\n")[2] == (   # below the progress it showed
                f"Interrupted: %gptoss {command} stopped (Ctrl-C): {said}")
            gc.collect()
            assert held and not any(ref() for ref in held)
        def pressed_in_a_class(real):   # Ctrl-C as a module of the load defines a class: Python 3.11 raised it as
            def press(*args, **kw):     # "RuntimeError: Error calling __set_name__ on 'Field' instance 'kwargs' in
                class Field:            # 'LoadPlan'", a traceback (seen in a kernel's first load)
                    def __set_name__(self, owner, name):
                        signal.raise_signal(signal.SIGINT)
                type("LoadPlan", (), {"kwargs": Field()})
                return real(*args, **kw)
            return press

        monkeypatch.setattr(checkpoint, "non_finite", pressed_in_a_class(non_finite))
        capsys.readouterr()
        shell.run_cell(f"%gptoss load {random_checkpoint}")
        assert capsys.readouterr().out.rstrip().rpartition("\n")[2] == (
            "Interrupted: %gptoss load stopped (Ctrl-C): nothing was loaded")
        magics = shell.magics_manager.registry["GptossMagics"]
        assert magics.session is None and magics._kept().browser is None
        from gptoss_lab.tools import containment

        def stopped(*args, **kw):   # the python tool's stop of its code's thread (a subclass) is not the user's
            raise containment._Interrupt()
        monkeypatch.setattr(local, "_read", stopped)
        with pytest.raises(KeyboardInterrupt) as caught:   # (any other one would end the test run)
            shell.run_line_magic("gptoss", f"browse {tmp_path / 'docs'}")
        assert type(caught.value) is containment._Interrupt
    finally:
        InteractiveShell.clear_instance()


def test_ctrl_c_before_a_cells_turn_begins_is_one_line_and_asks_nothing(capsys, ctrl_c_raises):
    """Ctrl-C while a cell's question was checked and rendered, before its turn began (seconds for a long prompt's
    first check of the vocabulary, or a schema's compilation), was a KeyboardInterrupt traceback through the session;
    it is one line, the conversation is as it was and the next cell answers. So in `%gptoss regenerate`, which gave
    the earlier answer back under the traceback."""
    import signal

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shell.run_cell("from gptoss_lab import Session, ReplayEngine\n"
                       "s = Session(ReplayEngine('<|channel|>final<|message|>4<|return|>'))\n%gptoss use s")
        s = shell.user_ns["s"]
        real = s._prefix

        def press(*args, **kw):   # the user's Ctrl-C while the turn's prompt is made
            del s._prefix
            signal.raise_signal(signal.SIGINT)
            return real(*args, **kw)

        s._prefix = press
        capsys.readouterr()
        shell.run_cell("%%gptoss --text\nWhat is 2+2?")
        assert capsys.readouterr().out.strip() == ("Interrupted: %%gptoss stopped (Ctrl-C) before its turn began: "
                                                   "nothing was asked, and the conversation is as it was")
        assert s.history == [] and s.replies == []
        shell.run_cell("%%gptoss --text\nWhat is 2+2?")
        assert shell.user_ns["_gptoss"].final == "4" and len(s.replies) == 1
        earlier = s.replies[-1]
        s._prefix = press
        capsys.readouterr()
        shell.run_cell("%gptoss regenerate")
        assert capsys.readouterr().out.strip() == ("Interrupted: %gptoss regenerate stopped (Ctrl-C) before its turn "
                                                   "began: the earlier answer is kept")
        assert s.replies == [earlier] and shell.user_ns["_gptoss"] is earlier
    finally:
        InteractiveShell.clear_instance()


def test_help_asked_before_a_command_is_that_commands_help(capsys):
    """`%gptoss -h load` printed the whole usage (both magics, every command), where `%gptoss load -h` prints load's."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shown = {}
        for line in ("load -h", "-h load", "--help load", "-h connect", "connect --help", "-h help", "-h"):
            shell.run_line_magic("gptoss", line)
            shown[line] = capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
    assert shown["-h load"] == shown["--help load"] == shown["load -h"]
    assert shown["load -h"].startswith("usage: %gptoss load")
    assert shown["-h connect"] == shown["connect --help"] and "--retries" in shown["-h connect"]
    assert shown["-h help"] == shown["-h"] and "%%gptoss" in shown["-h"] and "--retries" in shown["-h"]


def test_each_commands_help_ends_with_an_example_that_runs_as_written(capsys):
    """`%gptoss load --help` (any command's) listed its options with no example of a whole line, where the usage of
    all commands has some: each command's help now ends with one, whole on its line, that the magic takes as written."""
    from IPython.core.interactiveshell import InteractiveShell

    from gptoss_lab.magics import _line_commands

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for name in _line_commands():
            shell.run_line_magic("gptoss", f"{name} --help")
            said = capsys.readouterr().out
            assert "example:\n  %gptoss " + name in said, said
            example = said.rsplit("example:\n  ", 1)[1].split("\n")[0].split("  (")[0]
            assert _line_parser().parse_args(_words(example.removeprefix("%gptoss "))).command == name, example
    finally:
        InteractiveShell.clear_instance()


def test_a_line_ending_with_a_question_mark_reaches_the_magic(capsys):
    """IPython reads a line ending with `?` as a help request for its last name: `%gptoss load?` showed IPython's own
    `%load` magic, and `%gptoss History of Rome?` looked for an object `Rome`, where the magic answers where a question
    goes. A command's name with `?` (or `??`) is its help; the rest reaches the magic as written; `%gptoss?` is still
    IPython's help of the magic."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        said = {}
        for line in ("%gptoss load?", "%gptoss config ??", "%gptoss History of Rome?", "%gptoss config instructions=Why?"):
            shell.run_cell(line)
            said[line] = "".join(capsys.readouterr())   # (a UsageError on stderr)
        shell.run_cell("%gptoss?")
    finally:
        InteractiveShell.clear_instance()
    assert said["%gptoss load?"].startswith("usage: %gptoss load"), said
    assert said["%gptoss config ??"].startswith("usage: %gptoss config"), said
    assert "to ask, write the question on the lines below a %%gptoss line" in said["%gptoss History of Rome?"], said
    assert "instructions: 4 characters" in " ".join(said["%gptoss config instructions=Why?"].split()), said
    from gptoss_lab.magics import help_cells

    body = ["%%gptoss\n", "%gptoss load?\n"]   # a cell magic's body is its own text (here the question)
    assert help_cells(body) == body
    assert help_cells(["%gptoss ??\n"]) == ["%gptoss ??\n"]   # IPython's help of the magic, as `%gptoss??`
    text = ['s = """\n', '%gptoss what is this?\n', '"""\n', 'pair = (1,\n', '%gptoss who?\n', ')\n']
    assert help_cells(text) == text   # a line of a string or of brackets is the user's text, not a magic's line
    assert help_cells(["x = 1\n", "%gptoss load?\n"])[1].startswith("get_ipython().run_line_magic")


@pytest.fixture
def said():
    """`said(line, cell=None)`: the one-line UsageError `%gptoss line` (or a `%%gptoss line` cell) gives in an in-process
    IPython shell with the lab loaded (`said.shell`)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()

    def said(line: str, cell: str | None = None) -> str:
        with pytest.raises(UsageError) as error:
            shell.run_cell_magic("gptoss", line, cell) if cell else shell.run_line_magic("gptoss", line)
        return str(error.value)

    said.shell = shell
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        yield said
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace


def test_a_tool_list_with_an_empty_name_or_nothing_in_it_is_refused_saying_what_to_write(said):
    """`config tools=python,,` was kept and shown back as `tools: python,,`, `none,python` was "unknown tool 'none'",
    `NONE` and `python，browser` (a CJK keyboard's comma) had no hint, and `%%gptoss --tools ''` ran the cell with no
    tools, saying nothing: each is one line now, naming the empty name and what to write, and the settings stay as
    they were."""
    said.shell.run_cell("from gptoss_lab import Session, ReplayEngine\n"
                        "s = Session(ReplayEngine('<|channel|>final<|message|>4<|return|>'))")
    said.shell.run_line_magic("gptoss", "use s")
    assert said("config tools=python,,") == ("%gptoss config: tools must not hold an empty name (names 2 and 3 of 3 "
                                             "are empty): write 'python', not 'python,,'")
    assert said("config tools=,") == ("%gptoss config: tools must not hold an empty name (names 1 and 2 of 2 are "
                                      "empty): write 'none', not ','")
    assert said("config tools=none,python") == ("%gptoss config: tools must not list none (no tools) beside tools: "
                                                "write 'python', not 'none,python'")
    assert said("config tools=NONE").endswith("(did you mean 'none'?)")
    assert said("config tools=python，browser") == ("%gptoss config: tools must be separated by commas (,), not '，': "
                                                   "write 'python,browser', not 'python，browser'")
    assert said.shell.user_ns["s"].settings.tools == "python"   # nothing was changed
    assert said("--tools python,", "Hi") == ("%%gptoss: --tools must not hold an empty name (name 2 of 2 is empty): "
                                             "write 'python', not 'python,' (see %%gptoss --help)")
    for line, shown in (("--tools ''", "''"), ("--tools ' '", "' '"), ("--tools=", "''")):
        assert said(line, "Hi") == (f"%%gptoss: argument --tools: {shown} names no tool: write --tools none for no "
                                    "tools in this cell, or the tools' names (python, browser, your functions) "
                                    "(see %%gptoss --help)")
    assert not said.shell.user_ns["s"].replies   # nothing was asked


def test_a_value_in_curly_quotes_says_to_write_straight_ones(said, tmp_path, monkeypatch):
    """`--effort “high”`, pasted from a web page, was "invalid choice: '“high”'", `--temperature „0.7“` "must be a
    number", and `config instructions=“Be brief”` gave the model the quotes: the quotes are named, and what to write.
    Curly quotes inside straight ones, and a folder so named, are the user's text. A setting pasted as an option with a
    long dash (`config —effort high`) is named as `config --effort high` is."""
    letters = "which the magic reads as letters, not quotes: write"
    assert said("--effort “high”", "Hi") == (f"%%gptoss: “high” is in curly quotes (“), {letters} high (see %%gptoss "
                                             "--help)")
    assert said("--temperature=„0.7“", "Hi") == (f"%%gptoss: --temperature=„0.7“ is in curly quotes („), {letters} "
                                                 "--temperature=0.7 (see %%gptoss --help)")
    assert said("config effort=‘high’") == (f"%gptoss config: effort=‘high’ is in curly quotes (‘), {letters} "
                                            "effort=high (see %gptoss config --help)")
    assert said("config instructions=“Be brief”") == (f"%gptoss config: instructions=“Be is in curly quotes (“), "
                                                      f"{letters} the text in straight quotes, \" or ' (see %gptoss "
                                                      "config --help)")
    assert said("config —effort high").endswith("got '—effort' (did you mean effort=high?)")   # (no hint before)
    assert said("config —max-tokens 64").endswith("got '—max-tokens' (did you mean max_tokens=64?)")
    assert said("browse “notes”") == (f"%gptoss browse: “notes” is in curly quotes (“), {letters} notes (see "
                                      "%gptoss browse --help)")
    said.shell.run_line_magic("gptoss", "config instructions='“Be brief,” she said'")
    (tmp_path / "“notes”").mkdir()
    (tmp_path / "“notes”" / "a.md").write_text("# A\nThe harbour opens at dawn.\n")
    monkeypatch.chdir(tmp_path)
    said.shell.run_line_magic("gptoss", "browse “notes”")
    kept = said.shell.magics_manager.registry["GptossMagics"]._unloaded
    assert kept.settings.instructions == "“Be brief,” she said" and kept.browser is not None


def test_a_number_written_with_commas_or_in_e_notation_is_answered_with_the_number_to_write(said):
    """`--max-tokens 1,000`, `--temperature 0,7` (a decimal comma), `config threads=1e3`, `--max-tokens 10**9` and
    `connect --timeout 2,5` were only "must be a whole number", "must be a number" or "invalid float value": the number
    to write is named; a
    setting given nothing (`config seed=`) says how to set it back."""
    assert said("--max-tokens 1,000", "Hi") == ("%%gptoss: --max-tokens must be a whole number, not '1,000': write "
                                                "1000 (see %%gptoss --help)")
    assert said("--max-tokens 1e3", "Hi").endswith("not '1e3': write 1000 (see %%gptoss --help)")
    assert said("--temperature 0,7", "Hi") == ("%%gptoss: --temperature must be a number, not '0,7': write 0.7 "
                                               "(see %%gptoss --help)")
    assert said("--top-p ,9", "Hi").endswith("not ',9': write 0.9 (see %%gptoss --help)")
    assert said("--timeout 1,000", "Hi").endswith("not '1,000': write 1000 or 1.000 (see %%gptoss --help)")
    # a power or product written as Python or a calculator writes it was only "must be a whole number": the digits
    # to write are named, and the most the setting takes where that is less
    assert said("--max-tokens 10**9", "Hi").endswith("not '10**9': write 1000000000 (at most 1000000) (see %%gptoss "
                                                     "--help)")
    assert said("config max_tokens=2^12") == "%gptoss config: max_tokens must be a whole number, not '2^12': write 4096"
    assert said("--max-tokens 4*1024", "Hi").endswith("not '4*1024': write 4096 (see %%gptoss --help)")
    assert said("--max-tokens 10**99999", "Hi").endswith("not '10**99999' (see %%gptoss --help)")   # no such number
    assert said("config seed=") == "%gptoss config: seed must be a whole number, not '' (seed=default sets it back)"
    assert said("config approve=") == ("%gptoss config: approve must be 'auto', 'ask' or 'never', not '' "
                                       "(approve=default sets it back)")
    assert said("config threads=1e3") == "%gptoss config: threads must be a whole number from 1 to 1024, not '1e3': " \
                                         "write 1000"
    assert said("connect http://127.0.0.1:9 --timeout 2,5") == ("%gptoss connect: argument --timeout: invalid "
                                                                "float value: '2,5': write 2.5 (see %gptoss "
                                                                "connect --help)")
