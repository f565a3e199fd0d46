"""The gpt-oss-tiny command lines as a new user meets them: real --help, one-line errors with a non-zero
exit status for bad arguments and paths, no existing output overwritten, nothing half-written left behind
when a command fails or is interrupted. Each runs `python -m gptoss_lab.tiny.…` in a subprocess, with the
package these tests import."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gptoss_lab

ENV = {**os.environ, "PYTHONPATH": str(Path(gptoss_lab.__file__).parent.parent), "OMP_NUM_THREADS": "1"}


def _run(module: str, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"gptoss_lab.tiny.{module}", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


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
])
def test_help_names_the_command_its_defaults_and_an_example(module, shown):
    done = _run(module, "--help")
    assert done.returncode == 0 and not done.stderr
    for text in shown:
        assert text in " ".join(done.stdout.split()), (text, done.stdout)
    assert "Command line:" not in done.stdout


@pytest.mark.parametrize("weight", ["inf", "nan", "-1"])
def test_train_refuses_a_topic_weight_that_is_no_finite_number(tmp_path, weight):
    done = _run("train", "--quick", "--topics", f"browse={weight}", "--out", str(tmp_path / "run"))
    _one_line_error(done, f"'browse={weight}': expected SKILL=WEIGHT")
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_topic_weights_that_are_all_zero(tmp_path):
    zero = [f"{skill}=0" for skill in ("arithmetic", "kernel", "dataframe", "function", "browse", "structured",
                                       "error", "skip", "direct", "define")]
    done = _run("train", "--quick", "--out", str(tmp_path / "run"), "--topics", *zero)
    _one_line_error(done, "--topics: every weight is 0, so no conversation has a skill to draw")
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_an_existing_out_before_it_trains(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.safetensors").write_text("my weights")
    done = _run("train", "--quick", "--out", str(mine), timeout=60)
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


def test_evaluate_prints_only_the_table_on_stdout(tmp_path):
    done = _run("evaluate", "--n", "1", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("| | turns | valid Harmony %"), done.stdout[:300]   # `evaluate > table.md`
    assert "evaluating" in done.stderr


def test_train_refuses_fewer_layers_than_the_resumed_checkpoint_before_it_loads_it(tmp_path, random_checkpoint):
    done = _run("train", "--quick", "--resume", str(random_checkpoint), "--layers", "2", "--out", str(tmp_path / "r"))
    _one_line_error(done, "--layers must be even and at least the checkpoint's 4, not 2")
    assert list(tmp_path.iterdir()) == []


def test_train_interrupted_with_ctrl_c_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "gptoss_lab.tiny.train", "--conversations", "64", "--no-compile",
                                "--out", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.time() + 120
        while not any(p.name == "loss.jsonl" for p in tmp_path.rglob("*")) and time.time() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.5)
        time.sleep(1)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group, workers too
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    assert "Traceback" not in err and f"interrupted: nothing written to {out}" in err.splitlines(), err
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
                         "--source", str(source)), f"{tmp_path / 'none'} has no config.json")
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--outtype", "q9"), "invalid choice: 'q9'")
    _one_line_error(_run("llamacpp", str(tmp_path / "m.gguf"), "--source", str(tmp_path / "none.tar.gz")),
                    f"{tmp_path / 'none.tar.gz'}: no such file or folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.gguf", "sdist"]


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

