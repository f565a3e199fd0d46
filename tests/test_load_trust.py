"""What a load takes on trust from the name it is given and the folder it reads: only the string "tiny" is the bundled
model (and a mistyped name says what was meant), JSON files that are no regular file (a FIFO, /dev/zero, a /proc file)
are refused before anything reads them, a tensor stored in two shards, MXFP4 scales that make expert weights infinite,
shard names that would add a line to a refusal and config values torch or transformers fail on are refused in one
line, a tiny sampling temperature answers like greedy, and the quantizer refuses weights MXFP4 cannot hold."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gptoss_lab.engines import local
from gptoss_lab.engines.checkpoint import LoadError
from gptoss_lab.engines.doctor import doctor
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.tiny import CHECKPOINT
from gptoss_lab.tiny.quantize import quantize_checkpoint
from gptoss_lab.tools import containment
from test_checkpoint_hostile import in_two_shards  # tests/ is on sys.path
from test_kernel import run  # tests/ is on sys.path


def one_line_error(call, kind: type[Exception] = LoadError) -> str:
    """The message of the `kind` error `call()` raises, checked to be one line."""
    with pytest.raises(kind) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def load(folder: str | Path, **kw) -> LocalEngine:
    return LocalEngine.from_pretrained(folder, progress=False, **kw)


@pytest.fixture(scope="module")
def mxfp4(tmp_path_factory, random_checkpoint) -> Path:
    """The random checkpoint with MXFP4 experts, as openai/gpt-oss-20b stores them."""
    folder = tmp_path_factory.mktemp("mxfp4") / "gpt-oss-random-mxfp4"
    quantize_checkpoint(random_checkpoint, folder)
    return folder


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, random_checkpoint) -> Path:
    """The random checkpoint in two shards named by a model.safetensors.index.json."""
    folder = tmp_path_factory.mktemp("sharded") / "gpt-oss-random"
    shutil.copytree(random_checkpoint, folder)
    return in_two_shards(folder)


def test_only_the_string_tiny_is_the_bundled_model(tmp_path, monkeypatch, random_checkpoint):
    """`Session.load(Path("tiny"))` loaded the bundled gpt-oss-tiny, not the folder ./tiny; a missing ./tiny was
    reported as "tiny" (as if the bundled model were missing); `doctor(Path("gpt-oss-20b"))` sized the released
    model instead of looking for the folder."""
    monkeypatch.chdir(tmp_path)
    for name in (Path("tiny"), "./tiny", "tiny/", Path("gpt-oss-20b")):
        assert one_line_error(lambda: load(name)) == f"checkpoint folder not found: {name}"
    assert one_line_error(lambda: doctor(Path("tiny"))) == "checkpoint folder not found: tiny"
    assert one_line_error(lambda: doctor(Path("gpt-oss-20b"))) == "checkpoint folder not found: gpt-oss-20b"
    shutil.copytree(random_checkpoint, tmp_path / "tiny")
    assert load(Path("tiny")).config.hidden_size == 64  # the folder's random model (gpt-oss-tiny's differs)
    assert load("./tiny").name == "tiny"
    assert doctor(Path("tiny")).model == "tiny"
    assert load("tiny").name == "gpt-oss-tiny"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "proc", "empty"])
@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "model.safetensors.index.json"])
def test_a_json_file_that_is_no_regular_file_is_refused_before_it_is_read(tmp_path, random_checkpoint, sharded, name,
                                                                           kind):
    """A config.json linked to /proc/kmsg (a "regular" file of 0 bytes that waits for kernel messages: /proc/self/status
    stands in for it here) hung the load until Ctrl-C; a FIFO or /dev/zero was "no config.json", and as
    generation_config.json or the shard index was skipped without a word."""
    folder = tmp_path / "ckpt"
    shutil.copytree(sharded if name.endswith("index.json") else random_checkpoint, folder)
    path = folder / name
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "empty":
        path.touch()
    else:
        path.symlink_to("/dev/zero" if kind == "dev-zero" else "/proc/self/status")
    why = "is empty (0 bytes on disk)" if kind in ("proc", "empty") else "is not a regular file"
    assert one_line_error(lambda: load(folder)) == f"{folder} cannot be loaded: {name} {why}"
    if name == "config.json":  # the doctor reads a folder or a config.json
        assert one_line_error(lambda: doctor(folder)) == f"{folder} cannot be loaded: {name} {why}"
        assert one_line_error(lambda: doctor(path)) == f"{folder} cannot be loaded: {name} {why}"


def test_a_tensor_in_two_shards_is_refused(tmp_path, sharded):
    """A second copy of a weight in another shard loaded, one copy or the other taken without a word."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "twice"
    shutil.copytree(sharded, folder)
    first, second = folder / "model-00001-of-00002.safetensors", folder / "model-00002-of-00002.safetensors"
    copied = sorted(load_file(first))[0]
    tensors = load_file(second)
    tensors[copied] = load_file(first)[copied] * 100
    save_file(tensors, second, metadata={"format": "pt"})
    assert one_line_error(lambda: load(folder)) == (
        f"{folder} cannot be loaded: the weight {copied!r} is in two shards, 'model-00001-of-00002.safetensors' and "
        "'model-00002-of-00002.safetensors': remove one copy")


NAN_SCALE = ("hold 255, which the MX format reserves for NaN (transformers would read it as 2**128): the checkpoint is "
             "damaged; copy or download it again")


@pytest.mark.parametrize("byte, dtype, refused", [
    (255, None, NAN_SCALE),
    (255, "float64", NAN_SCALE),  # was "too large for float64: weights up to 6 × 2**128 would be infinite"
    (253, None, "hold 253 (2**126), too large for float32: weights up to 6 × 2**126 would be infinite; scales go up "
                "to 252"),
    (141, "float16", "hold 141 (2**14), too large for float16: weights up to 6 × 2**14 would be infinite; scales go "
                     "up to 140"),
    (252, None, None),
    (140, "float16", None),
], ids=["255", "float64-255", "253", "float16-141", "252-loads", "float16-140-loads"])
def test_mxfp4_scales_that_make_weights_infinite_are_refused(tmp_path, mxfp4, byte, dtype, refused):
    """One scale byte of 255 loaded: transformers dequantized 6 * 2**128 to inf, and every turn wrote "!!!!!!!!"
    (NaN logits) with no hint why."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "scaled"
    shutil.copytree(mxfp4, folder)
    key = "model.layers.1.mlp.experts.down_proj_scales"
    tensors = load_file(folder / "model.safetensors")
    tensors[key][0, 0, 0] = byte
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    if refused is None:
        experts = load(folder, dtype=dtype).model.model.layers[1].mlp.experts.down_proj
        assert torch.isfinite(experts).all()
    else:
        assert one_line_error(lambda: load(folder, dtype=dtype)) == (
            f"{folder} cannot be loaded: the MXFP4 scales {key!r} {refused}")


def test_the_engine_stops_with_the_containment_modules_never():
    """`_never` (a stop check that never stops) was defined twice; the engine takes containment's."""
    assert local._never is containment._never and "_never" not in vars(local.LocalEngine)
    assert local.__dict__["_never"].__module__ == "gptoss_lab.tools.containment"


def test_a_shard_name_cannot_add_a_line_to_the_refusal(tmp_path, sharded):
    """The index named a damaged shard "x\\nLoaded gpt-oss-120b.safetensors" (a file of that name beside it): the
    refusal printed a second line of the checkpoint's choosing."""
    folder = tmp_path / "named"
    shutil.copytree(sharded, folder)
    bad = "x\nLoaded gpt-oss-120b.safetensors"
    (folder / "model-00002-of-00002.safetensors").unlink()
    (folder / bad).write_bytes(b"garbage")
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: bad if v.startswith("model-00002") else v for k, v in data["weight_map"].items()}
    index.write_text(json.dumps(data))
    assert one_line_error(lambda: load(folder)).startswith(
        f"{folder} cannot be loaded: x\\nLoaded gpt-oss-120b.safetensors is damaged or incomplete (")


YARN = {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "original_max_position_embeddings": 4096}
INVALID = "the config of {folder} is not a valid gpt-oss config: "


@pytest.mark.parametrize("changes, message", [
    ({"pad_token_id": 10**9},  # was torch's AssertionError
     INVALID + "pad_token_id must be a token id below vocab_size (201,088), not 1000000000"),
    ({"quantization_config": {"quant_method": "gptq"}},  # was transformers' TypeError
     INVALID + "quantization_config's quant_method must be 'mxfp4', not 'gptq'"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 0}},  # loaded, and every turn wrote "!!!!"
     INVALID + "rope_theta must be a number above 0, not 0"),
    ({"rope_parameters": {**YARN, "factor": 0.5}},  # transformers warned, then loaded it
     INVALID + "the rope scaling factor must be a number of 1 or more, not 0.5"),
    ({"rope_parameters": {**YARN, "rope_type": "bogus"}}, INVALID + "rope_type must be one of default, "),  # KeyError
    ({"rope_parameters": {**YARN, "rope_type": "llama3"}},  # KeyError
     INVALID + "\"Missing required keys in `rope_parameters` for 'rope_type'='llama3'"),
    ({"rope_parameters": {**YARN, "beta_fast": -5}},  # ValueError: math domain error
     INVALID + "its rotary settings (yarn) compute no rotary embedding (math domain error)"),
    ({"rms_norm_eps": -1.0}, INVALID + "rms_norm_eps must be a number of 0 or more, not -1.0"),  # "!!!!"
], ids=["pad-token-id", "gptq-config", "rope-theta-0", "rope-factor-0.5", "rope-type-bogus", "llama3-keys-missing",
        "yarn-beta-fast", "rms-norm-eps"])
def test_config_values_torch_or_transformers_raise_on_are_one_line(tmp_path, random_checkpoint, changes, message):
    """Each showed a traceback from deep inside the load, or loaded a model whose every turn wrote "!!!!"."""
    folder = tmp_path / "odd"
    shutil.copytree(random_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    assert one_line_error(lambda: load(folder)).startswith(message.format(folder=folder))


def test_quantizing_weights_that_hold_inf_or_nan_is_refused_in_one_line(tmp_path, capsys, random_checkpoint):
    """`python -m gptoss_lab.tiny.quantize` wrote a NaN's block as zeros and an inf's block as NaNs (scale byte 255)
    without a word; the checkpoint then loaded and answered "!!!!"."""
    import torch
    from safetensors.torch import load_file, save_file

    from gptoss_lab.tiny.quantize import main, quantize

    weight = torch.ones(2, 64)
    weight[1, 5] = float("nan")
    with pytest.raises(ValueError, match="^MXFP4 holds finite values only, and these weights hold inf or NaN$"):
        quantize(weight)
    source = tmp_path / "source"
    shutil.copytree(random_checkpoint, source)
    tensors = load_file(source / "model.safetensors")
    key = "model.layers.2.mlp.experts.down_proj"
    tensors[key][0, 0, 0] = float("inf")
    save_file(tensors, source / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SystemExit):
        main(["--source", str(source), "--out", str(tmp_path / "out")])
    assert capsys.readouterr().err.splitlines()[-1] == (f"python -m gptoss_lab.tiny.quantize: error: {key}: MXFP4 holds "
                                                        "finite values only, and these weights hold inf or NaN")
    assert not (tmp_path / "out").exists()


@pytest.mark.kernel
def test_load_dot_slash_tiny_in_a_kernel_is_the_folder(tmp_path, random_checkpoint):
    """In a notebook whose folder has no ./tiny, `%gptoss load ./tiny` said "checkpoint folder not found: tiny" (as if
    the bundled model were missing) and `Session.load(Path("tiny"))` loaded the bundled model; with a ./tiny folder
    both load the folder, and only `%gptoss load tiny` is the bundled model."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        assert run(kc, "%load_ext gptoss_lab\nfrom pathlib import Path\nfrom gptoss_lab import Session", timeout=120)[1]["status"] == "ok"
        refused = run(kc, "%gptoss load ./tiny", timeout=120)[1]
        assert (refused["ename"], refused["evalue"]) == ("UsageError", "%gptoss load: checkpoint folder not found: ./tiny")
        refused = run(kc, 'Session.load(Path("tiny"), progress=False)', timeout=120)[1]
        assert (refused["ename"], refused["evalue"]) == ("LoadError", "checkpoint folder not found: tiny")
        shutil.copytree(random_checkpoint, tmp_path / "tiny")
        assert run(kc, "%gptoss load ./tiny", timeout=120)[1]["status"] == "ok"
        assert run(kc, "%gptoss status", timeout=120)[0].startswith("model: tiny |")
        assert run(kc, 'print(Session.load(Path("tiny"), progress=False).engine.config.hidden_size)', timeout=120)[0].strip() == "64"
        assert run(kc, "%gptoss load tiny", timeout=120)[1]["status"] == "ok"
        assert run(kc, "%gptoss status", timeout=120)[0].startswith("model: gpt-oss-tiny |")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("name, message", [
    ("Tiny", "Tiny is not a checkpoint folder here: the bundled model (gpt-oss-tiny) loads as tiny, in lower case"),
    ("gpt-oss-tiny", "gpt-oss-tiny is not a checkpoint folder here: the bundled model (gpt-oss-tiny) loads as tiny, "
                     "in lower case"),   # the name every status line shows, which the Hub does not have
    ("gpt-oss-20b", "gpt-oss-20b is not a checkpoint folder here: the released model's Hub id is openai/gpt-oss-20b"),
    ("GPT-OSS-120B", "GPT-OSS-120B is not a checkpoint folder here: the released model's Hub id is openai/gpt-oss-120b"),
    ("tyni", "tyni is not a checkpoint folder here (did you mean tiny, the bundled gpt-oss-tiny?)"),
    ("tinny", "tinny is not a checkpoint folder here (did you mean tiny, the bundled gpt-oss-tiny?)"),
], ids=["Tiny", "gpt-oss-tiny", "gpt-oss-20b", "GPT-OSS-120B", "tyni", "tinny"])
def test_a_mistyped_model_name_says_what_was_meant(tmp_path, monkeypatch, name, message):
    """`%gptoss load gpt-oss-20b` was looked up on the Hub as is and, offline, advised `hf download gpt-oss-20b`,
    which fails too; `%gptoss load Tiny` the same, and `%gptoss load tyni` (a typo) advised `hf download tyni`."""
    monkeypatch.chdir(tmp_path)
    assert one_line_error(lambda: load(name)) == message


@pytest.mark.parametrize("model, temperature", [("random", 1e-300), ("tiny", 2e-38)])
def test_a_tiny_sampling_temperature_answers_like_greedy(tmp_path, random_checkpoint, model, temperature):
    """A generation_config.json sampling at temperature 1e-300 (which the load accepted, as `%gptoss config` does)
    failed every turn: "The turn failed: RuntimeError: probability tensor contains either `inf`, `nan` or element < 0";
    so did gpt-oss-tiny (larger logits than the random model's) at 2e-38, above float32's smallest normal number."""
    from gptoss_lab import Session

    folder = tmp_path / "cold"
    shutil.copytree(random_checkpoint if model == "random" else CHECKPOINT, folder)
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": temperature}))
    reply = Session(load(folder), namespace={}, tools="none").ask("Hi", max_new_tokens=6, seed=3)
    assert not any("failed" in error for error in reply.errors), reply.errors
    greedy = Session(load(folder), namespace={}, tools="none").ask("Hi", max_new_tokens=6, temperature=0)
    assert reply.usage.completion_tokens == greedy.usage.completion_tokens == 6
    assert (reply.analysis, reply.final) == (greedy.analysis, greedy.final)


def test_quantizing_a_source_whose_config_is_a_fifo_is_refused_unread(tmp_path, random_checkpoint):
    """`python -m gptoss_lab.tiny.quantize --source FOLDER` with a FIFO for config.json waited forever (run in a child
    with a time limit, so that a hang fails the test instead of holding it)."""
    source = tmp_path / "source"
    shutil.copytree(random_checkpoint, source)
    (source / "config.json").unlink()
    os.mkfifo(source / "config.json")
    child = subprocess.run([sys.executable, "-m", "gptoss_lab.tiny.quantize", "--source", str(source), "--out",
                            str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert (child.returncode, child.stderr.splitlines()[-1]) == (2, "python -m gptoss_lab.tiny.quantize: error: "
                                                                    f"{source} cannot be loaded: config.json is not a "
                                                                    "regular file")


def test_a_numbered_cpu_device_loads_as_the_cpu(capsys):
    """`%gptoss load tiny --device cpu:7` announced bfloat16 on cpu:7, then failed: "Using a `device_map` ... requires
    `accelerate`" (a new user's review). It is the CPU, and loads as on one."""
    import torch

    from gptoss_lab import Session

    session = Session.load("tiny", device="cpu:7")
    weight = next(session.engine.model.parameters())
    assert (weight.device.type, weight.dtype) == ("cpu", torch.float32)
    out = capsys.readouterr().out   # after "Starting torch and transformers ..." where this test runs first
    assert any(line.startswith("Loading gpt-oss-tiny on cpu (float32, the CPU default,") for line in out.splitlines()), out


def test_the_doctor_refuses_a_device_torch_does_not_know():
    """`doctor(model, device="bogus")` sized the model against this machine's RAM: "... does not fit on bogus"."""
    assert one_line_error(lambda: doctor("openai/gpt-oss-20b", device="bogus")) == (
        "'bogus' is not a device: use cpu, cuda, cuda:1, mps ...")
    assert doctor("openai/gpt-oss-20b", device="cuda:1", memory="80 GB").fits  # another machine's GPU


def test_a_mistyped_checkpoint_folder_names_the_folder_beside_it(tmp_path, random_checkpoint):
    """`%gptoss load ~/models/gpt-oss-20` (the b left out) said only "checkpoint folder not found"; the folder of a
    close name beside it is now named, for the load and the doctor alike, and nothing is guessed when none is close."""
    shutil.copytree(random_checkpoint, tmp_path / "gpt-oss-20b")
    (tmp_path / "notes").mkdir()
    for typed in ("gpt-oss-20", "gpt-os-20b", "gpt-oss-20b.bak"):
        meant = f"checkpoint folder not found: {tmp_path / typed} (did you mean {tmp_path / 'gpt-oss-20b'}?)"
        assert one_line_error(lambda: load(tmp_path / typed)) == meant
        assert one_line_error(lambda: doctor(str(tmp_path / typed))) == meant
    assert one_line_error(lambda: load(tmp_path / "llama")) == f"checkpoint folder not found: {tmp_path / 'llama'}"


@pytest.mark.parametrize("device", ["cuda:7", "7"])
def test_a_gpu_past_those_of_this_machine_is_refused_in_one_line(random_checkpoint, monkeypatch, device):
    """`--device cuda:7` on a machine of one GPU passed the check that a GPU is there, then torch's "invalid device
    ordinal" came out of the free-memory count as a traceback; the doctor sizing it for another machine (memory=) asked
    this one's GPU 7 for its name and kernels. Both say which GPUs this machine has instead."""
    import torch

    from gptoss_lab.engines import checkpoint

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(LoadError) as info:
        checkpoint.plan_load(random_checkpoint, device=device)
    assert str(info.value) == (f"{device} was asked for, but torch sees 1 CUDA GPU (cuda:0) here: use "
                               f"Session.load('{random_checkpoint}', device='cuda') or "
                               f"Session.load('{random_checkpoint}', device='cpu')")
    sized = doctor(random_checkpoint, device=device, memory="80 GB")
    assert sized.device_name == "not here: torch sees 1 CUDA GPU (cuda:0)" and sized.kernels == sized.device_name[10:]


def test_a_folder_name_with_terminal_controls_is_written_out_in_the_load_lines(tmp_path, random_checkpoint, capsys):
    """A checkpoint folder named `gpt\\x1b[2J...` (unpacked from someone's archive): the "Loading ..." and "Note: ..."
    lines printed its escape sequence, which a terminal or the notebook's output obeyed (cleared, recoloured), and a
    direction override reversed the line; "Loaded" alone wrote them out."""
    folder = shutil.copytree(random_checkpoint, tmp_path / "gpt\x1b[2J\x1b[31mred\u202eoss")
    LocalEngine.from_pretrained(folder, dtype="float16", dequantize=True)
    out = capsys.readouterr().out
    assert "Loading gpt\\x1b[2J\\x1b[31mred\\u202eoss on cpu" in out and "Note: gpt\\x1b[2J" in out
    assert "\x1b" not in out and "\u202e" not in out


def test_the_python_tools_code_cannot_switch_or_unload_the_labs_session():
    """`get_ipython().run_line_magic('gptoss', 'use s2')` in the model's code switched the user's next cells to another
    session, and `unload`, though the session refused it, dropped the loaded one (the next cell loaded gpt-oss-tiny in
    a new conversation). Both are refused in one line and the lab keeps its session; so is `config effort=high`, while
    `config` alone, which only shows the settings, was refused too and is the code's to run. A real kernel."""
    from test_adversarial_python import _execute, started_kernel

    with started_kernel() as (_, kc):
        out, content = _execute(kc, "get_ipython().run_line_magic('load_ext', 'gptoss_lab')\n"
                                    "s1 = Session(ReplayEngine('')); s2 = Session(ReplayEngine(''))\n"
                                    "get_ipython().run_line_magic('gptoss', 'use s1')")
        assert content["status"] == "ok", out
        for command in ("use s2", "unload", "config effort=high", "config"):
            code = f"get_ipython().run_line_magic('gptoss', {command!r})"
            out, content = _execute(kc, f"r = turn({code!r}, timeout=30)\nprint(r['output'].splitlines()[-1])\n"
                                        "print(get_ipython().magics_manager.registry['GptossMagics'].session is s1,"
                                        " s1.settings.effort)")
            refused = (f"IPython.core.error.UsageError: %gptoss {command.split()[0]}: the python tool's code cannot "
                       "change the lab's model, session or settings: they are the user's, changed between turns")
            shown = "turns: 0" if command == "config" else refused   # `config` alone: the settings, as status shows them
            assert out.splitlines()[-2].endswith(shown) and out.splitlines()[-1] == "True medium", out


def test_an_unload_the_session_refuses_keeps_it_as_the_labs():
    """`%gptoss unload` while a turn of the session ran on another thread was refused ("this session is running a
    turn"), yet the lab had let go of the session: its model stayed loaded and the next cell loaded gpt-oss-tiny in
    a new conversation."""
    import threading

    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from gptoss_lab import ReplayEngine, Session

    class Held(ReplayEngine):
        """A replay whose stream waits until it is let go."""

        go = threading.Event()

        def stream(self, *args, **kw):
            self.go.wait(10)
            yield from super().stream(*args, **kw)

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shell.user_ns["s"] = session = Session(Held("<|channel|>final<|message|>hi<|return|>"))
        shell.run_line_magic("gptoss", "use s")
        turn = threading.Thread(target=session.ask, args=("hello",))
        turn.start()
        while not session._busy.locked():
            turn.join(0.01)
        with pytest.raises(UsageError, match="this session is running a turn"):
            shell.run_line_magic("gptoss", "unload")
        Held.go.set()
        turn.join(10)
        assert shell.magics_manager.registry["GptossMagics"].session is session
        assert session.replies[-1].final == "hi"
    finally:
        InteractiveShell.clear_instance()
