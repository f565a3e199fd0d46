"""The gpt-oss-tiny command lines as a new user meets them: real --help, one-line errors with a non-zero
exit status for bad arguments and paths, no existing output overwritten, nothing half-written left behind
when a command fails or is interrupted. Each runs `python -m gptoss_lab.tiny.…` in a subprocess, with the
package these tests import."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import gptoss_lab
from gptoss_lab.tiny import CHECKPOINT

ENV = {**os.environ, "PYTHONPATH": str(Path(gptoss_lab.__file__).parent.parent), "OMP_NUM_THREADS": "1"}


def _run(module: str, *args: str, cwd: Path | None = None, timeout: float = 120,
         light: bool = False, lighter: bool = False) -> subprocess.CompletedProcess:
    """Run a command; `light`: an answer that needs no model (--help, a usage error) imports neither torch,
    transformers nor the local engine (train imported the first two first: 5-6 s of CPU before either), seen
    with `-X importtime`, whose lines are taken out of the stderr returned. `lighter` (--help): nor the Session,
    openai-harmony or pydantic (train's --help took ~0.6 s of CPU to import the Session its data module needs)."""
    light = light or lighter
    done = subprocess.run([sys.executable, *(["-X", "importtime"] if light else []), "-m",
                           ".".join(filter(None, ("gptoss_lab.tiny", module))), *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)
    if light:
        lines = done.stderr.splitlines(keepends=True)
        imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
        heavy = imported & {"torch", "transformers", "gptoss_lab.engines.local",
                            *(("gptoss_lab.session", "openai_harmony", "pydantic") if lighter else ())}
        assert not heavy, (module, args, sorted(heavy))
        done.stderr = "".join(line for line in lines if not line.startswith("import time:"))
    return done


def _ctrl_c_default() -> None:
    """Ctrl-C as in a terminal: a shell running the tests in the background (`pytest &`) ignores SIGINT, and a
    command inheriting that would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ctrl_c(module: str, *args: str, ready: Callable[[str], bool], env: dict[str, str] = ENV) -> tuple[int, str]:
    """Run a command and press Ctrl-C (SIGINT to its whole process group, as a terminal does) once `ready(stderr so
    far)`; its exit status and stderr."""
    with tempfile.NamedTemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", f"gptoss_lab.tiny.{module}", *args], env=env,
                                   stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True,
                                   preexec_fn=_ctrl_c_default)
        try:
            deadline = time.time() + 120
            while not ready(Path(err.name).read_text()) and time.time() < deadline:
                assert process.poll() is None, Path(err.name).read_text()
                time.sleep(0.5)
            time.sleep(1)
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        return process.returncode, Path(err.name).read_text()


def _one_line_error(done: subprocess.CompletedProcess, message: str) -> None:
    """A failed command: non-zero status, no traceback, the message on stderr's last (and only error) line."""
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr.strip().splitlines()[-1], done.stderr


@pytest.mark.parametrize("module, shown", [
    ("train", ["usage: python -m gptoss_lab.tiny.train", "default: 0.003", "default: 24000", "example"]),
    ("evaluate", ["usage: python -m gptoss_lab.tiny.evaluate", "default: 100", "default: 20250805", "example"]),
    ("quantize", ["usage: python -m gptoss_lab.tiny.quantize", "MXFP4", "default: gpt-oss-tiny-mxfp4", "example"]),
    ("llamacpp", ["usage: python -m gptoss_lab.tiny.llamacpp", "default: f32", "example"]),
    ("tokenizer", ["usage: python -m gptoss_lab.tiny.tokenizer", "example"]),
    ("random_model", ["usage: python -m gptoss_lab.tiny.random_model", "default: 4", "example"]),
])
def test_help_names_the_command_its_defaults_and_an_example(module, shown):
    done = _run(module, "--help", lighter=True)
    assert done.returncode == 0 and not done.stderr
    for text in shown:
        assert text in " ".join(done.stdout.split()), (text, done.stdout)
    assert "Command line:" not in done.stdout


def test_help_examples_name_the_packages_own_files_where_they_are(tmp_path, monkeypatch, capsys):
    """The tokenizer's example wrote into ./gptoss_lab/tiny/checkpoint and train's named the checkpoint card there:
    right in a clone's root alone, not in another folder nor for an installed package."""
    import importlib

    monkeypatch.chdir(tmp_path)
    for module in ("train", "evaluate", "quantize", "llamacpp", "tokenizer", "random_model"):
        with pytest.raises(SystemExit):
            importlib.import_module(f"gptoss_lab.tiny.{module}").main(["--help"])
        example = capsys.readouterr().out.partition("example: ")[2]
        named = [word.strip("(),'") for word in example.split() if "gptoss_lab/" in word]
        assert all(Path(word).exists() for word in named), (module, named)
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_option_names_the_one_meant_and_a_missing_checkpoint_is_a_usage_error(tmp_path, capsys):
    """`train --quik` said only "unrecognized arguments: --quik", where the magics name the option meant; `quantize
    --source /nonexistent` said "error: ..." with status 1 and no program name, where evaluate said a usage error."""
    import importlib

    for module, args, meant in [("train", ["--quik"], "--quick"), ("evaluate", ["--chekpoint=x"], "--checkpoint"),
                                ("tokenizer", ["x", "--hepl"], "--help"), ("quantize", ["--souce"], "--source"),
                                ("llamacpp", ["m.gguf", "--outype"], "--outtype"), ("random_model", ["r", "--seeed"], "--seed"),
                                # a shortened option is not taken for the one it starts (argparse's prefix matching)
                                ("llamacpp", ["m.gguf", "--outtyp"], "--outtype"), ("evaluate", ["--show"], "--show-failures")]:
        with pytest.raises(SystemExit) as ended:
            importlib.import_module(f"gptoss_lab.tiny.{module}").main(args)
        said = capsys.readouterr().err.splitlines()[-1]
        assert ended.value.code == 2 and said == (f"python -m gptoss_lab.tiny.{module}: error: unrecognized arguments: "
                                                  f"{args[-1]}: did you mean {meant!r}?"), said
    with pytest.raises(SystemExit):   # a value given to an option that takes none, said without argparse's words
        importlib.import_module("gptoss_lab.tiny.train").main(["--quick=yes"])
    assert capsys.readouterr().err.splitlines()[-1] == ("python -m gptoss_lab.tiny.train: error: --quick takes no value, "
                                                        "not 'yes': write --quick alone")
    none = tmp_path / "none"
    for module, args in [("evaluate", ["--checkpoint", str(none)]), ("quantize", ["--source", str(none)]),
                         ("llamacpp", [str(tmp_path / "m.gguf"), "--checkpoint", str(none)])]:
        with pytest.raises(SystemExit) as ended:
            importlib.import_module(f"gptoss_lab.tiny.{module}").main(args)
        said = capsys.readouterr().err.splitlines()
        assert ended.value.code == 2 and said[0].startswith(f"usage: python -m gptoss_lab.tiny.{module}"), said
        assert said[-1] == f"python -m gptoss_lab.tiny.{module}: error: checkpoint folder not found: {none}", said
    assert list(tmp_path.iterdir()) == []


def test_commands_read_tiny_as_the_bundled_checkpoint_from_any_folder(tmp_path, monkeypatch, capsys):
    """Installed, gpt-oss-tiny's folder is deep in site-packages: `--resume tiny` (as `%gptoss load tiny`) was
    "not found" in every folder but one holding `tiny`. Each command gets past the checkpoint to its next check."""
    from gptoss_lab.tiny import llamacpp, quantize, train

    monkeypatch.chdir(tmp_path)
    runs = [(train, ["--resume", "tiny", "--layers", "2", "--out", "r"], "checkpoint's 4, not 2"),
            (quantize, ["--source", "tiny", "--out", str(CHECKPOINT / "mx")], "another folder than its source"),
            (llamacpp, ["m.gguf", "--checkpoint", "tiny", "--source", str(tmp_path)], "not a llama-cpp-python source")]
    for module, args, said in runs:
        with pytest.raises(SystemExit):
            module.main(args)
        assert said in capsys.readouterr().err, module.__name__
    assert list(tmp_path.iterdir()) == []


def test_train_help_says_the_default_weight_of_each_topic(capsys):
    """--topics browse=0.3 said nothing of what browse weighs without it (0.12), nor of the other skills."""
    from gptoss_lab.tiny import data, train

    with pytest.raises(SystemExit):
        train.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert all(f"{skill}={weight}" in shown for skill, weight in data.NEW_TOPICS.items()), shown


def test_train_topics_given_twice_add_up_and_a_skill_given_twice_is_refused(tmp_path, monkeypatch, capsys):
    """`--topics browse=0.2 --topics kernel=0.16` trained with kernel=0.16 alone, and `browse=0.2 browse=0.3` with
    the last weight: the first was dropped with no word."""
    from gptoss_lab.tiny import train

    ran = []
    monkeypatch.setattr(train, "train", lambda out, **kwargs: ran.append(kwargs["topics"]) or {})
    train.main(["--quick", "--out", str(tmp_path / "run"), "--topics", "browse=0.2", "--topics", "kernel=0.16"])
    assert ran == [{"browse": 0.2, "kernel": 0.16}]
    with pytest.raises(SystemExit) as ended:
        train.main(["--quick", "--out", str(tmp_path / "again"), "--topics", "browse=0.2", "kernel=0.1", "browse=0.3"])
    assert ended.value.code == 2 and len(ran) == 1
    assert capsys.readouterr().err.splitlines()[-1].endswith("--topics: browse given more than once: give each "
                                                             "skill one weight")


@pytest.mark.parametrize("weight", ["inf", "nan", "-1"])
def test_train_refuses_a_topic_weight_that_is_no_finite_number(tmp_path, weight):
    done = _run("train", "--quick", "--topics", f"browse={weight}", "--out", str(tmp_path / "run"), light=True)
    _one_line_error(done, f"'browse={weight}': expected SKILL=WEIGHT")
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_topic_weights_that_are_all_zero(tmp_path):
    zero = [f"{skill}=0" for skill in ("arithmetic", "kernel", "dataframe", "function", "browse", "structured",
                                       "error", "skip", "direct", "define")]
    done = _run("train", "--quick", "--out", str(tmp_path / "run"), "--topics", *zero, light=True)
    _one_line_error(done, "--topics: every weight is 0, so no conversation has a skill to draw")
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_an_existing_out_before_it_trains(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.safetensors").write_text("my weights")
    done = _run("train", "--quick", "--out", str(mine), timeout=60, light=True)
    _one_line_error(done, f"{mine} already exists: give a new (or empty) folder")
    assert [p.name for p in mine.iterdir()] == ["model.safetensors"]
    assert (mine / "model.safetensors").read_text() == "my weights"
    (tmp_path / "file").write_text("x")
    _one_line_error(_run("train", "--quick", "--out", str(tmp_path / "file"), timeout=60), "already exists")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")   # its rename at the end would fail, losing the run
    _one_line_error(_run("train", "--quick", "--out", str(tmp_path / "link"), timeout=60), "already exists")
    _one_line_error(_run("train", "--quick", "--out", "/proc/gptoss/run", timeout=60), "cannot write /proc/gptoss/run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "link", "mine"]


def test_train_quick_writes_its_checkpoint_into_an_empty_out_and_nothing_beside_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    done = _run("train", "--quick", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["conversations"] == 48 and "training" in done.stderr   # the bar is not in stdout
    assert {"config.json", "model.safetensors", "loss.jsonl", "train_summary.json"} <= {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    # the output names the folder, and the weights are readable as the umask makes files (transformers wrote 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert json.loads(done.stdout)["out"] == str(out)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    _one_line_error(_run("train", "--quick", "--conversations", "200", "--out", str(tmp_path / "q")),
                    "--quick is a smoke run of 48 conversations, which sets --conversations itself")


def test_evaluate_prints_only_the_table_on_stdout(tmp_path):
    done = _run("evaluate", "--n", "1", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("| | turns | valid Harmony %"), done.stdout[:300]   # `evaluate > table.md`
    assert "evaluating" in done.stderr


def test_train_refuses_fewer_layers_than_the_resumed_checkpoint_before_it_loads_it(tmp_path):
    done = _run("train", "--quick", "--resume", str(CHECKPOINT), "--layers", "2", "--out", str(tmp_path / "r"))
    _one_line_error(done, "--layers must be even and at least the checkpoint's 4, not 2")
    assert list(tmp_path.iterdir()) == []


def test_train_interrupted_with_ctrl_c_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    status, err = _ctrl_c("train", "--conversations", "64", "--no-compile", "--out", str(out),
                          ready=lambda _: any(p.name == "loss.jsonl" for p in tmp_path.rglob("*")))
    assert status != 0
    assert "Traceback" not in err and f"interrupted: nothing written to {out}" in err.splitlines(), err
    assert list(tmp_path.iterdir()) == []


def test_train_ended_with_kill_takes_its_workers_along_and_leaves_nothing_behind(tmp_path):
    """SIGTERM to the training process alone (`kill PID`, `timeout`): its data worker went on making conversations,
    orphaned, until it was killed by hand."""
    import psutil

    out = tmp_path / "run"
    with tempfile.NamedTemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "gptoss_lab.tiny.train", "--conversations", "5000",
                                    "--no-compile", "--workers", "1", "--out", str(out)], env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True)
        workers: list[psutil.Process] = []
        try:
            deadline = time.time() + 120   # training has begun and its worker is up (on a busy CPU, not always at once)
            while time.time() < deadline:
                assert process.poll() is None, Path(err.name).read_text()
                workers = psutil.Process(process.pid).children(recursive=True)
                if workers and any(p.name == "loss.jsonl" for p in tmp_path.rglob("*")):
                    break
                time.sleep(0.5)
            assert workers, "no worker process to check"
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            _, alive = psutil.wait_procs(workers, timeout=20)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            for worker in workers:   # an orphan belongs to init now, not to this test's process
                with contextlib.suppress(psutil.NoSuchProcess):
                    worker.kill()
        assert alive == [], alive
        text = Path(err.name).read_text()
        assert "Traceback" not in text and f"interrupted: nothing written to {out}" in text.splitlines(), text
    assert list(tmp_path.iterdir()) == []


def test_evaluate_and_llamacpp_interrupted_with_ctrl_c_say_so_in_one_line(tmp_path, random_checkpoint):
    status, err = _ctrl_c("evaluate", ready=lambda err: "evaluating" in err)
    assert status == 130 and err.strip().splitlines()[-1] == "interrupted: no table printed", err
    assert "Traceback" not in err, err
    slow = _fake_source(tmp_path / "slow", "open(out, 'wb').write(b'GGUF half')\nimport time\ntime.sleep(60)\n")
    out = tmp_path / "m.gguf"
    status, err = _ctrl_c("llamacpp", str(out), "--checkpoint", str(random_checkpoint), "--source", str(slow),
                          ready=lambda _: any(".partial" in p.name for p in tmp_path.iterdir()))
    assert status == 130 and err.strip().splitlines() == [f"interrupted: nothing written to {out}"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow"]


# Run as `sitecustomize` in a command's process: its `import STOP_AT` at module level (as spelled, with its leading
# dots) touches the file READY, then waits there for Ctrl-C, as a user's Ctrl-C lands while torch takes seconds.
_STOP_AT_AN_IMPORT = """
import builtins, os, time
_import = builtins.__import__

def _stopping(name, globals=None, locals=None, fromlist=(), level=0):
    if ((globals or {}).get("__name__") == "__main__" and "." * level + name == os.environ["STOP_AT"]
            and not os.path.exists(os.environ["READY"])):
        open(os.environ["READY"], "w").close()
        time.sleep(60)
    return _import(name, globals, locals, fromlist, level)

builtins.__import__ = _stopping
"""


@pytest.mark.parametrize("module, stop_at, args", [
    ("train", "torch", ["--quick", "--out", "OUT"]), ("evaluate", "..engines.local", ["--n", "1"]),
    ("quantize", "..engines.checkpoint", ["--out", "OUT"]), ("tokenizer", "pathlib", ["OUT"]),
    ("llamacpp", "..engines.checkpoint", ["OUT.gguf"]), ("random_model", "pathlib", ["OUT"]),
])
def test_ctrl_c_while_a_command_still_imports_is_one_line(tmp_path, module, stop_at, args):
    """Ctrl-C in the seconds a command spends importing torch and transformers, before `main` runs: a 30-line
    KeyboardInterrupt traceback, where Ctrl-C a moment later is one line."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_STOP_AT_AN_IMPORT)
    ready = tmp_path / "importing"
    env = {**ENV, "PYTHONPATH": f"{hook}{os.pathsep}{ENV['PYTHONPATH']}", "STOP_AT": stop_at, "READY": str(ready)}
    status, err = _ctrl_c(module, *(arg.replace("OUT", str(tmp_path / "out")) for arg in args),
                          ready=lambda _: ready.exists(), env=env)
    assert ready.exists() and status == 130, (status, err)
    assert err.splitlines() == ["interrupted while starting: nothing was done"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hook", "importing"]


def test_train_refuses_more_workers_than_cpus(tmp_path):
    too_many = str((os.cpu_count() or 1) + 1)   # each a process importing torch: 64 of them filled the memory
    done = _run("train", "--quick", "--workers", too_many, "--out", str(tmp_path / "run"), timeout=300)
    _one_line_error(done, f"argument --workers: expected an integer from 0 to {os.cpu_count() or 1}, not '{too_many}'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("zero, kind", [
    (["function"], "with functions but no python"),
    (["browse"], "with documents but no python"),
    (["arithmetic", "kernel", "dataframe", "structured", "error", "define"], "with python but no functions or documents"),
])
def test_train_refuses_a_topic_mix_that_leaves_some_conversations_nothing_to_draw(tmp_path, zero, kind):
    """The first two crashed a few conversations in (`--topics skip=0 direct=0 function=0 --conversations 10`), the
    third at once: random.choices' traceback, weights all 0."""
    done = _run("train", "--quick", "--out", str(tmp_path / "run"), "--topics",
                *(f"{skill}=0" for skill in ["skip", "direct", *zero]), timeout=300)
    _one_line_error(done, f"--topics: conversations {kind} would have no skill to draw: give one of")
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_refuses_to_overwrite_a_checkpoints_tokenizer_and_bad_folders(tmp_path):
    folder = tmp_path / "gpt-oss-20b"
    folder.mkdir()
    config = '{"chat_template": "{% for m in messages %}…{% endfor %}"}'
    (folder / "tokenizer_config.json").write_text(config)
    _one_line_error(_run("tokenizer", str(folder)), f"{folder} already has its own tokenizer_config.json")
    assert [p.name for p in folder.iterdir()] == ["tokenizer_config.json"]
    assert (folder / "tokenizer_config.json").read_text() == config
    (tmp_path / "file").write_text("x")
    _one_line_error(_run("tokenizer", str(tmp_path / "file")), f"{tmp_path / 'file'} is not a folder")
    _one_line_error(_run("tokenizer", "/proc/gptoss/tok"), "cannot write /proc/gptoss/tok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "gpt-oss-20b"]


def test_a_reader_that_stops_early_ends_a_command_quietly_once_its_work_is_done(tmp_path):
    """A closed stdout (`… | head -0`): tokenizer said 'cannot write DIR: Broken pipe' of the folder it had written,
    and evaluate's table was a BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "gptoss_lab.tiny.tokenizer", str(tmp_path / "tk")], stdout=write,
                              stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")
    assert (tmp_path / "tk" / "tokenizer.json").is_file()


def test_an_empty_path_is_refused_in_one_line_and_nothing_is_written_here(tmp_path, monkeypatch, capsys):
    """`tokenizer "$DIR"` with DIR unset read '' as the current folder and wrote its four files there."""
    from gptoss_lab.tiny import tokenizer

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        tokenizer.main([""])
    assert ended.value.code == 2 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.splitlines()[-1].endswith("argument folder: an empty value ('') names no file or "
                                                             "folder")
    from gptoss_lab.tiny import quantize   # (`--out ""` said ". is not a new folder's name ... e.g. run")

    with pytest.raises(SystemExit) as ended:
        quantize.main(["--out", ""])
    assert ended.value.code == 2 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.splitlines()[-1].endswith("argument --out: an empty value ('') names no file or "
                                                             "folder")


def test_tokenizer_that_cannot_finish_leaves_no_file_and_no_folder(tmp_path, monkeypatch, capsys):
    from gptoss_lab.tiny import tokenizer

    written = []

    def disk_full(self: Path, text: str, **kwargs) -> int:
        if written:
            raise OSError(28, "No space left on device")
        written.append(self)
        return Path.write_bytes(self, text.encode())

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(SystemExit) as exit_:
        tokenizer.main([str(tmp_path / "new")])
    assert exit_.value.code == 2 and written
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"error: cannot write {tmp_path / 'new'}: No space left on device"), err
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_tiny_writes_into_the_users_cache_never_into_the_installed_package(tmp_path, monkeypatch, capsys):
    """`tokenizer tiny` wrote tokenizer.json (8.5 MB) and three more files into the installed package's checkpoint
    folder: in a read-only install (system site-packages, a Docker image, a shared env) it failed, elsewhere it wrote
    where the user's files do not belong. It makes gpt-oss-tiny with its tokenizer in the user's cache
    ($XDG_CACHE_HOME/gptoss_lab), the package left as it was, and says in one line when the cache cannot be written."""
    from gptoss_lab.tiny import tokenizer

    package = tmp_path / "site" / "gptoss_lab"
    shutil.copytree(Path(gptoss_lab.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__", "tokenizer.json"))
    for path in [package, *package.rglob("*")]:   # read-only, as a root install is (root may write all the same:
        path.chmod(path.stat().st_mode & ~0o222)   # the listing below says whether it did)
    before = {path: path.stat().st_mtime_ns for path in package.rglob("*")}
    env = {**ENV, "PYTHONPATH": str(package.parent), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "gptoss_lab.tiny.tokenizer", "tiny"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)   # not in the clone's root, whose package -m would run
    copy = tmp_path / "cache" / "gptoss_lab" / "gpt-oss-tiny"
    try:
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, str(copy / "tokenizer.json"), "")
        assert {path: path.stat().st_mtime_ns for path in package.rglob("*")} == before
    finally:
        for path in [package, *package.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert sorted(path.name for path in copy.iterdir()) == sorted(["config.json", "generation_config.json",
                                                                     "model.safetensors", *tokenizer.FILES])
    assert (copy / "model.safetensors").read_bytes() == (CHECKPOINT / "model.safetensors").read_bytes()
    added = json.loads((copy / "tokenizer.json").read_text())["added_tokens"]
    assert {token["content"]: token["id"] for token in added}["<|start|>"] == 200006

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))   # no cache folder can be made there
    with pytest.raises(SystemExit) as exit_:
        tokenizer.main(["tiny"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 2, err   # the usage line and one line of error
    assert err[-1].endswith(f"error: cannot write {tmp_path / 'file' / 'gptoss_lab' / 'gpt-oss-tiny'}: Not a directory; "
                            "gpt-oss-tiny with its tokenizer goes to your cache folder, not into the installed package: "
                            f"copy it (cp -r {CHECKPOINT} my-tiny) and write into the copy"), err


def _fake_source(root: Path, body: str) -> Path:
    """A llama-cpp-python source folder whose convert_hf_to_gguf.py runs `body` (args: its command line)."""
    script = root / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    script.parent.mkdir(parents=True)
    script.write_text("import sys\nout = sys.argv[sys.argv.index('--outfile') + 1]\n" + body)
    return root


def test_llamacpp_refusals_are_one_line_and_run_no_converter(tmp_path):
    source = _fake_source(tmp_path / "sdist", "open(out, 'wb').write(b'GGUF')\nopen(sys.argv[0] + '.ran', 'w')\n")
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"my model")
    _one_line_error(_run("llamacpp", str(mine), "--source", str(source)), f"{mine} already exists")
    assert mine.read_bytes() == b"my model"
    _one_line_error(_run("llamacpp", str(tmp_path / "no" / "m.gguf"), "--source", str(source)),
                    f"{tmp_path / 'no'} is not a folder")
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--checkpoint", str(tmp_path / "none"),
                         "--source", str(source)), f"checkpoint folder not found: {tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--checkpoint", str(tmp_path / "empty"),
                         "--source", str(source)), f"{tmp_path / 'empty'} has no config.json")
    (tmp_path / "empty").rmdir()
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--outtype", "q9"), "invalid choice: 'q9'")
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--source", str(tmp_path / "none.tar.gz")),
                    f"{tmp_path / 'none.tar.gz'}: no such file or folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.gguf", "sdist"]


def test_llamacpp_into_a_folder_it_cannot_write_says_so_in_one_line_before_it_converts(tmp_path, capsys):
    """/proc (a read-only mount alike) ran the whole conversion, then failed naming a hidden .partial file."""
    from gptoss_lab.tiny import llamacpp

    source = _fake_source(tmp_path / "sdist", "open(sys.argv[0] + '.ran', 'w')\nopen(out, 'wb').write(b'GGUF')\n")
    with pytest.raises(SystemExit) as ended:
        llamacpp.main(["/proc/m.gguf", "--source", str(source)])
    assert ended.value.code == 1
    assert capsys.readouterr().err == "python -m gptoss_lab.tiny.llamacpp: error: cannot write /proc/m.gguf: No such file or directory\n"
    assert not list(source.rglob("*.ran"))


def test_llamacpp_converter_failure_is_one_line_and_leaves_no_half_written_gguf(tmp_path, random_checkpoint):
    failing = _fake_source(tmp_path / "failing", "open(out, 'wb').write(b'GGUF half')\n"
                           "raise SystemExit('ValueError: Unknown model architecture')\n")
    done = _run("llamacpp", str(tmp_path / "m.gguf"), "--checkpoint", str(random_checkpoint), "--source", str(failing))
    _one_line_error(done, "convert_hf_to_gguf.py failed: ValueError: Unknown model architecture")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failing"]
    working = _fake_source(tmp_path / "working", "open(out, 'wb').write(b'GGUF')\n")
    done = _run("llamacpp", str(tmp_path / "m.gguf"), "--checkpoint", str(random_checkpoint), "--source", str(working))
    assert done.returncode == 0 and (tmp_path / "m.gguf").read_bytes() == b"GGUF", done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failing", "m.gguf", "working"]


def test_llamacpp_uses_the_sdist_it_is_given_over_a_cached_converter(tmp_path, random_checkpoint):
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("llama-cpp-python")
    except PackageNotFoundError:
        from gptoss_lab.tiny.llamacpp import LLAMA_CPP_PYTHON as installed
    cached = tmp_path / "cache" / "gptoss_lab" / f"llama-cpp-python-{installed}" / "convert_hf_to_gguf.py"
    cached.parent.mkdir(parents=True)
    cached.write_text("import sys\nopen(sys.argv[sys.argv.index('--outfile') + 1], 'wb').write(b'OLD')\n")
    _fake_source(tmp_path / "llama_cpp_python-9.9.9", "open(out, 'wb').write(b'NEW')\n")
    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    subprocess.run(["tar", "-czf", str(sdist), "-C", str(tmp_path), "llama_cpp_python-9.9.9"], check=True)
    done = subprocess.run([sys.executable, "-m", "gptoss_lab.tiny.llamacpp", str(tmp_path / "m.gguf"), "--checkpoint",
                           str(random_checkpoint), "--source", str(sdist)], capture_output=True, text=True,
                          env={**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=120)
    assert done.returncode == 0, done
    assert (tmp_path / "m.gguf").read_bytes() == b"NEW"
    assert sorted(p.name for p in cached.parent.parent.iterdir()) == [f"llama-cpp-python-{installed}",
                                                                      "llama_cpp_python-9.9.9"]


# `python -m pip` for the command under test: `pip download … llama-cpp-python==V -d FOLDER` logs as pip does (on
# stdout) and copies $FAKE_SDIST there, or fails as pip offline does when $FAKE_SDIST is unset.
_FAKE_PIP = """
import os, shutil, sys
version = next(arg for arg in sys.argv if arg.startswith("llama-cpp-python==")).split("==")[1]
if not os.environ.get("FAKE_SDIST"):
    print("WARNING: Retrying (Retry(total=4)) after connection broken", file=sys.stderr)
    print(f"ERROR: Could not find a version that satisfies the requirement llama-cpp-python=={version}", file=sys.stderr)
    sys.exit(1)
print(f"Collecting llama-cpp-python=={version}")
print(f"  Downloading llama_cpp_python-{version}.tar.gz (50.7 MB)")
folder = sys.argv[sys.argv.index("-d") + 1]
os.makedirs(folder, exist_ok=True)
shutil.copy(os.environ["FAKE_SDIST"], os.path.join(folder, f"llama_cpp_python-{version}.tar.gz"))
print("Successfully downloaded llama-cpp-python")
"""


def test_llamacpp_keeps_pips_log_off_stdout_and_a_failure_shows_pips_error(tmp_path, random_checkpoint):
    """The first run fetches the converter with `pip download`: pip's log was printed on stdout, the command's own
    output (`… llamacpp OUT | tail -1` gave pip's lines), and a failure said "offline?" without pip's reason."""
    (tmp_path / "pip").mkdir()
    (tmp_path / "pip" / "__init__.py").write_text("")
    (tmp_path / "pip" / "__main__.py").write_text(_FAKE_PIP)
    _fake_source(tmp_path / "llama_cpp_python-9.9.9", "open(out, 'wb').write(b'GGUF')\n")
    sdist = tmp_path / "sdist.tar.gz"
    subprocess.run(["tar", "-czf", str(sdist), "-C", str(tmp_path), "llama_cpp_python-9.9.9"], check=True)
    env = {**ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ENV['PYTHONPATH']}", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LLAMA_CPP_SDIST", None)   # .ci/run gives the real sdist: here the first run must fetch one
    from importlib.metadata import PackageNotFoundError, version

    from gptoss_lab.tiny import llamacpp

    try:
        installed = version("llama-cpp-python")
    except PackageNotFoundError:
        installed = llamacpp.LLAMA_CPP_PYTHON
    fetching = f"downloading the llama-cpp-python {installed} source with pip, once, for its converter"
    command = [sys.executable, "-m", "gptoss_lab.tiny.llamacpp", "--checkpoint", str(random_checkpoint)]
    out = tmp_path / "m.gguf"
    done = subprocess.run([*command, str(out)], capture_output=True, text=True, timeout=120,
                          env={**env, "FAKE_SDIST": str(sdist)})
    assert done.returncode == 0 and out.read_bytes() == b"GGUF", done
    assert done.stdout.splitlines() == [f"wrote {out}; serve it with:", "  " + shlex.join(llamacpp.serve_command(out))]
    assert done.stderr.splitlines() == [fetching], done.stderr
    offline = tmp_path / "offline.gguf"   # (a new cache: the first run's holds the converter, and pip is not run)
    failed = subprocess.run([*command, str(offline)], capture_output=True, text=True, timeout=120,
                            env={**env, "XDG_CACHE_HOME": str(tmp_path / "new-cache")})
    assert failed.returncode == 1 and failed.stdout == "", failed
    assert failed.stderr.splitlines() == [fetching, (
        f"python -m gptoss_lab.tiny.llamacpp: error: pip could not download the llama-cpp-python {installed} sdist (offline? give --source): "
        f"ERROR: Could not find a version that satisfies the requirement llama-cpp-python=={installed}")]
    assert not offline.exists()


def test_quantize_refuses_a_link_to_an_empty_folder_before_it_works(tmp_path, random_checkpoint):
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")   # the rename at the end failed: all the work was lost
    done = _run("quantize", "--source", str(random_checkpoint), "--out", str(tmp_path / "link"))
    _one_line_error(done, f"{tmp_path / 'link'} already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link"] and not any((tmp_path / "empty").iterdir())


def test_tokenizer_writes_again_into_a_folder_holding_only_its_own_files(tmp_path):
    """The checkpoint card's own command (`tokenizer gptoss_lab/tiny/checkpoint`, whose tokenizer_config.json and
    special_tokens_map.json this command wrote and git keeps) was refused once overwriting was."""
    import shutil

    from gptoss_lab.tiny import CHECKPOINT

    folder = tmp_path / "tiny"
    shutil.copytree(CHECKPOINT, folder, ignore=shutil.ignore_patterns("model.safetensors", "tokenizer.json"))
    result = _run("tokenizer", str(folder))
    assert result.returncode == 0 and result.stdout.strip() == str(folder / "tokenizer.json"), result.stderr
    assert (folder / "tokenizer.json").stat().st_size > 8_000_000



def test_tokenizer_ensure_writes_only_the_missing_files_and_never_another_tokenizers(tmp_path):
    """`ensure` wrote all three files when one was missing: over another tokenizer's config (its chat template)."""
    from gptoss_lab.tiny import CHECKPOINT, tokenizer

    theirs = tmp_path / "gpt-oss-20b"
    theirs.mkdir()
    config = '{"chat_template": "{% for m in messages %}…{% endfor %}"}'
    (theirs / "tokenizer_config.json").write_text(config)
    with pytest.raises(ValueError, match="already has its own tokenizer_config.json: nothing overwritten"):
        tokenizer.ensure(theirs)
    assert [p.name for p in theirs.iterdir()] == ["tokenizer_config.json"]
    assert (theirs / "tokenizer_config.json").read_text() == config
    ours = tmp_path / "tiny"   # the lab's own config files, kept in git: only tokenizer.json is missing
    shutil.copytree(CHECKPOINT, ours, ignore=shutil.ignore_patterns("model.safetensors", "tokenizer.json"))
    kept = {p.name: p.stat().st_mtime_ns for p in ours.iterdir()}
    tokenizer.ensure(ours)
    assert (ours / "tokenizer.json").stat().st_size > 8_000_000
    assert {p.name: p.stat().st_mtime_ns for p in ours.iterdir() if p.name != "tokenizer.json"} == kept


def test_random_model_writes_a_new_checkpoint_and_overwrites_nothing(tmp_path):
    out = tmp_path / "random"
    done = _run("random_model", str(out), "--layers", "2", "--seed", "1")
    assert done.returncode == 0 and done.stdout.strip() == str(out), done
    assert "Writing model shards" not in done.stderr  # transformers' bar for the one file it writes said nothing
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"]) == ("gpt_oss", 2)
    assert (out / "model.safetensors").is_file() and [p.name for p in tmp_path.iterdir()] == ["random"]
    _one_line_error(_run("random_model", str(out)), f"{out} already exists")
    _one_line_error(_run("random_model", str(tmp_path / "odd"), "--layers", "3"), "--layers must be an even number")
    _one_line_error(_run("random_model", str(tmp_path / "k"), "--top-k", "9"), "--top-k must be at most --experts (8)")
    assert [p.name for p in tmp_path.iterdir()] == ["random"]


def test_random_model_refuses_a_checkpoint_past_a_gigabyte_unless_asked(tmp_path):
    """`random_model OUT --experts 100000` (a zero too many) wrote a 10 GB checkpoint in 13 s without a word: its size
    is counted first, and past 1 GB it is refused in one line naming the size, the default's and --large."""
    done = _run("random_model", str(tmp_path / "big"), "--experts", "100000")
    _one_line_error(done, "error: --layers 4 --experts 100000 make a 10.1 GB checkpoint (the default is 26.6 MB); "
                          "past 1.0 GB it is written only with --large")
    assert list(tmp_path.iterdir()) == []
    assert "--large" in _run("random_model", "--help").stdout


def test_random_model_help_says_its_default_shape_and_how_it_differs_from_gpt_oss_tiny(random_checkpoint):
    """A new user took the default random model for gpt-oss-tiny's shape: it is narrower, and --help said nowhere.
    The figures shown are checked against a default random checkpoint's config and the bundled one's."""
    from gptoss_lab.tiny import CHECKPOINT

    done = _run("random_model", "--help")
    shown = " ".join(done.stdout.split())
    made, tiny = (json.loads((folder / "config.json").read_text()) for folder in (random_checkpoint, CHECKPOINT))
    for name, key in [("hidden size", "hidden_size"), ("expert size", "intermediate_size"), ("head dimension", "head_dim"),
                      ("sliding window", "sliding_window"), ("positions", "max_position_embeddings")]:
        assert made[key] != tiny[key] and f"{name} {made[key]} (gpt-oss-tiny: {tiny[key]})" in shown, (name, shown)
    rope = {"yarn": "YaRN RoPE", "default": "plain RoPE"}
    made_rope, tiny_rope = (rope[config["rope_parameters"]["rope_type"]] for config in (made, tiny))
    assert f"{made_rope} (gpt-oss-tiny: {tiny_rope})" in shown, shown
    same = [f"the same {tiny['num_hidden_layers']} layers", f"{tiny['num_local_experts']} experts",
            f"top-{tiny['num_experts_per_tok']}", f"{tiny['num_attention_heads']} query and "
            f"{tiny['num_key_value_heads']} key-value heads", f"{tiny['vocab_size']}-token vocabulary", "tied embeddings"]
    keys = ["num_hidden_layers", "num_local_experts", "num_experts_per_tok", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "tie_word_embeddings"]
    assert all(made[key] == tiny[key] for key in keys) and all(text in shown for text in same), shown


def test_a_finished_run_that_cannot_become_its_out_folder_is_kept_and_said_in_one_line(tmp_path, monkeypatch, capsys):
    """Two runs into one --out: the second trained to the end, then printed a traceback ("Directory not empty") and
    its weights were deleted with the partial folder; a read-only mount point as --out the same (a new user's review:
    with the defaults, 90 minutes of training gone)."""
    from gptoss_lab.tiny import new_folder, train

    def finished(out: Path, **kwargs: object) -> dict:
        (out / "model.safetensors").write_bytes(b"weights")
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "other.txt").write_text("another run's")   # written meanwhile
        return {}

    monkeypatch.setattr(train, "train", finished)
    with pytest.raises(SystemExit) as ended:
        train.main(["--quick", "--out", str(tmp_path / "run")])
    said = capsys.readouterr().err.strip().splitlines()[-1]
    kept = next(tmp_path.glob(".run.partial-*"))
    assert ended.value.code == 1 and said == (f"python -m gptoss_lab.tiny.train: error: cannot put the finished work at "
                                              f"{tmp_path / 'run'} (Directory not empty; another run wrote there "
                                              f"meanwhile?): it is kept whole in {kept}")
    assert (kept / "model.safetensors").read_bytes() == b"weights" and os.listdir(tmp_path / "run") == ["other.txt"]
    with pytest.raises(RuntimeError), new_folder(tmp_path / "failed") as partial:   # a failing block keeps nothing
        (partial / "half").write_text("x")
        raise RuntimeError
    assert not list(tmp_path.glob(".failed.partial-*")) and not (tmp_path / "failed").exists()


def test_train_says_it_compiles_before_its_first_step_on_stderr_and_stdout_stays_the_summary(tmp_path, monkeypatch,
                                                                                             capsys):
    """torch.compile works at the first step: a first run sat at "training 0%" for a minute with no word. Here the
    compiler is a stand-in that notes what the user had read when the first step called it."""
    from gptoss_lab.tiny import train

    read_at_first_step: list[str] = []

    def compiling(function: Callable, **options: object) -> Callable:
        def first_call(*args: object) -> object:
            if not read_at_first_step:
                read_at_first_step.append(capsys.readouterr().err)
            return function(*args)
        return first_call

    monkeypatch.setattr(train.torch, "compile", compiling)
    train.main(["--conversations", "2", "--workers", "0", "--out", str(tmp_path / "run")])
    notice = "compiling the model for this CPU at the first step (about a minute), then it trains ~2x faster"
    assert notice in read_at_first_step[0].splitlines(), read_at_first_step
    summary = capsys.readouterr().out
    assert json.loads(summary)["conversations"] == 2 and notice not in summary   # stdout: the summary alone


def test_resume_and_llamacpp_refuse_a_folder_without_usable_weights_in_one_line(tmp_path, random_checkpoint):
    """`train --resume` of quantize's own output was an ImportError traceback ("mxfp4 requires Accelerate"), and of a
    folder with only config.json an OSError traceback; llamacpp of the latter a KeyError traceback."""
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(random_checkpoint / "config.json", config_only)
    _one_line_error(_run("train", "--quick", "--resume", str(config_only), "--out", str(tmp_path / "a")),
                    f"{config_only} has a config.json but no weights (*.safetensors)")
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--checkpoint", str(config_only),
                         "--source", str(_fake_source(tmp_path / "sdist", "open(out, 'wb').write(b'GGUF')\n"))),
                    f"{config_only} has a config.json but no weights (*.safetensors)")
    assert _run("quantize", "--source", str(random_checkpoint), "--out", str(tmp_path / "q")).returncode == 0
    _one_line_error(_run("train", "--quick", "--resume", str(tmp_path / "q"), "--out", str(tmp_path / "b")),
                    f"{tmp_path / 'q'} holds quantized (MXFP4) weights: training goes on from an unquantized checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config_only", "q", "sdist"]


def test_llamacpp_never_replaces_a_file_another_run_wrote_meanwhile(tmp_path, random_checkpoint):
    """Two conversions to one name both checked it first, then the later replaced the earlier's GGUF: both said
    "wrote", one file was gone (a new user's review)."""
    other = ("import os, re\nfinal = os.path.join(os.path.dirname(out), re.sub(r'^\\.(.*)\\.partial-.*$', r'\\1', "
             "os.path.basename(out)))\nopen(final, 'wb').write(b'the other run')\nopen(out, 'wb').write(b'GGUF')\n")
    done = _run("llamacpp", str(tmp_path / "m.gguf"), "--checkpoint", str(random_checkpoint),
                "--source", str(_fake_source(tmp_path / "sdist", other)))
    _one_line_error(done, f"{tmp_path / 'm.gguf'} was written by another run meanwhile")
    assert (tmp_path / "m.gguf").read_bytes() == b"the other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "sdist"]


def _sdist(tmp_path: Path) -> Path:
    """A small llama-cpp-python sdist .tar.gz whose converter writes b'GGUF'."""
    _fake_source(tmp_path / "llama_cpp_python-9.9.9", "open(out, 'wb').write(b'GGUF')\n")
    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    subprocess.run(["tar", "-czf", str(sdist), "-C", str(tmp_path), "llama_cpp_python-9.9.9"], check=True)
    return sdist


@pytest.mark.parametrize("damage", ["empty", "truncated", "not gzip"])
def test_llamacpp_given_a_file_that_is_no_whole_sdist_says_so_in_one_line(tmp_path, random_checkpoint, monkeypatch,
                                                                          capsys, damage):
    """An empty or non-tar LLAMA_CPP_SDIST printed tarfile's five-line error, a truncated download an EOFError
    traceback."""
    from gptoss_lab.tiny import llamacpp

    monkeypatch.setattr(llamacpp, "_CACHE", tmp_path / "cache")
    whole = _sdist(tmp_path).read_bytes()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes({"empty": b"", "truncated": whole[: len(whole) // 2], "not gzip": b"not an archive\n"}[damage])
    with pytest.raises(SystemExit) as exit_:
        llamacpp.main([str(tmp_path / "m.gguf"), "--checkpoint", str(random_checkpoint), "--source", str(bad)])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"python -m gptoss_lab.tiny.llamacpp: error: {bad} is not a whole .tar.gz (") and err.endswith(
        "): give a llama-cpp-python sdist .tar.gz or its unpacked folder\n"), err
    assert not (tmp_path / "m.gguf").exists() and not any((tmp_path / "cache").iterdir())


def test_llamacpp_with_an_empty_llama_cpp_sdist_fetches_the_sdist_as_when_unset(tmp_path, monkeypatch):
    """`LLAMA_CPP_SDIST=` (set, empty) was a ValueError traceback ('nothing to open')."""
    from gptoss_lab.tiny import llamacpp

    sdist = _sdist(tmp_path)
    monkeypatch.setattr(llamacpp, "_CACHE", tmp_path / "cache")
    monkeypatch.setattr(llamacpp, "_download", lambda version, folder: sdist)   # pip's fetch, without the network
    monkeypatch.setenv("LLAMA_CPP_SDIST", "")
    script = llamacpp.converter()
    assert script.parent.parent == tmp_path / "cache" and "b'GGUF'" in script.read_text()


@pytest.mark.parametrize("module", ["train", "quantize", "random_model"])
def test_out_dot_in_an_empty_folder_is_refused_before_any_work(tmp_path, random_checkpoint, monkeypatch, capsys,
                                                                module):
    """`train --out .` in an empty folder trained the whole run, then failed ('cannot put the finished work at .
    (Invalid argument; another run wrote there meanwhile?)') and left it in a folder named '..partial-*'."""
    from gptoss_lab.tiny import quantize, random_model, train

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    main, argv = {"train": (train.main, ["--conversations", "2", "--workers", "0", "--no-compile", "--out", "."]),
                  "quantize": (quantize.main, ["--source", str(random_checkpoint), "--out", "."]),
                  "random_model": (random_model.main, ["."])}[module]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code in (1, 2) and "Traceback" not in err
    assert ". is not a new folder's name: name the folder to make, e.g. run" in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == [here] and list(here.iterdir()) == []


def test_llamacpp_prints_a_serve_command_that_a_shell_reads_back_for_a_path_with_spaces(tmp_path, capsys, monkeypatch):
    """`python -m gptoss_lab.tiny.llamacpp "My models/tiny.gguf"` printed `... --model My models/tiny.gguf ...`: pasted
    into a shell, the server got `--model My` and a stray word. The printed command is quoted as a shell reads it."""
    from gptoss_lab.tiny import llamacpp

    out = tmp_path / "My models" / "tiny.gguf"
    monkeypatch.setattr(llamacpp, "convert", lambda out, *args, **kw: Path(out))   # the printing, not llama.cpp's work
    llamacpp.main([str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert shlex.split(printed[1]) == llamacpp.serve_command(out), printed


def test_the_package_run_as_a_command_lists_its_commands():
    """`python -m gptoss_lab.tiny` said only "'gptoss_lab.tiny' is a package and cannot be directly executed": it lists
    the commands, each with what it does, at once (nothing heavy imported); `python -m gptoss_lab.tiny train --quick`
    is answered with the line to run."""
    listed = _run("", lighter=True)
    assert listed.returncode == 0 and listed.stdout.startswith("usage: python -m gptoss_lab.tiny.COMMAND"), listed
    for command in ("train", "evaluate", "quantize", "llamacpp", "tokenizer", "random_model"):
        assert f"\n  {command} " in listed.stdout, listed.stdout
    assert "Train gpt-oss-tiny from scratch on CPU" in listed.stdout
    assert _run("", "--help", lighter=True).stdout == listed.stdout
    word = _run("", "train", "--quick", lighter=True)
    assert word.returncode == 2 and word.stderr.splitlines()[-1] == (
        "python -m gptoss_lab.tiny: error: a command is part of the module's name: python -m gptoss_lab.tiny.train "
        "--quick"), word.stderr
    other = _run("", "trian", light=True)
    assert other.returncode == 2 and other.stderr.splitlines()[-1] == (
        "python -m gptoss_lab.tiny: error: no command 'trian': did you mean 'train'?"), other.stderr
