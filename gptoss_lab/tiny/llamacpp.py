"""Serve gpt-oss-tiny (or any GptOss checkpoint folder) with llama.cpp.

`python -m gptoss_lab.tiny.llamacpp OUT.gguf [--checkpoint DIR]` converts the checkpoint with
llama.cpp's own `convert_hf_to_gguf.py`, taken from the `llama-cpp-python` source distribution of
the installed version (so the GGUF matches the library that serves it), and prints the command
that serves it:

    python -m llama_cpp.server --model OUT.gguf --model_alias gpt-oss-tiny --n_ctx 12288 --host 127.0.0.1 --port 8000

then, in a notebook, `Session.connect("http://127.0.0.1:8000")`. See docs/remote.md (in a wheel:
gptoss_lab/docs/remote.md).
"""
from __future__ import annotations

from . import Parser, command, importing

with importing(__name__):   # Ctrl-C while the command starts: one line, as in its work (torch takes seconds)
    import json
    import os
    import shlex
    import shutil
    import subprocess
    import sys
    import tarfile
    import tempfile
    import uuid
    import zlib
    from pathlib import Path

    from ..engines.checkpoint import CHECKPOINT_FILES, LoadError, checked_folder, own_file, own_weight_files
    from ..guides import guide
    from . import CHECKPOINT, cache_dir, checkpoint_folder, path, tokenizer

LLAMA_CPP_PYTHON = "0.3.36"  # the version .ci/run builds; llama.cpp has gpt-oss since August 2025
_VENDOR = "vendor/llama.cpp/"
_NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
_CACHE = cache_dir()


def _installed_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:  # not installed: convert with the pinned version's converter
        return LLAMA_CPP_PYTHON


def converter(source: str | Path | None = None) -> Path:
    """llama.cpp's `convert_hf_to_gguf.py`, unpacked from a llama-cpp-python sdist.

    `source` (or `$LLAMA_CPP_SDIST`) is the sdist `.tar.gz` or an unpacked source folder; without
    one, the sdist of the installed version is fetched with `pip download` into ~/.cache/gptoss_lab.
    Each sdist is unpacked once, into a folder of the cache named after it.
    """
    source = source or os.environ.get("LLAMA_CPP_SDIST") or None   # LLAMA_CPP_SDIST= (empty) as unset
    if source and Path(source).is_dir():
        script = Path(source) / _VENDOR / "convert_hf_to_gguf.py"
        if not script.is_file():
            raise FileNotFoundError(f"{source} is not a llama-cpp-python source folder (no {_VENDOR}convert_hf_to_gguf.py)")
        return script
    if source and not Path(source).is_file():
        raise FileNotFoundError(f"{source}: no such file or folder (give a llama-cpp-python sdist .tar.gz or its folder)")
    version = _installed_version()
    target = _CACHE / (Path(source).name.removesuffix(".tar.gz") if source else f"llama-cpp-python-{version}")
    script = target / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    if source is None:
        source = _download(version, _CACHE / "sdist")
    # unpacked beside `target`, which it becomes only when whole: an interrupted unpacking broke every later run
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _unpack(Path(source), partial)
        if not (partial / "convert_hf_to_gguf.py").is_file():
            raise FileNotFoundError(f"{source} holds no {_VENDOR}convert_hf_to_gguf.py")
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return script


def _unpack(source: Path, folder: Path) -> None:
    """The converter's files of the sdist `source`, unpacked into `folder`; a RuntimeError in one line for a file that
    is no whole tar archive (tarfile's error was five lines, a truncated download an EOFError traceback)."""
    try:
        with tarfile.open(source) as tar:
            members = []
            for member in tar.getmembers():
                inner = member.name.split("/", 1)[-1]
                if inner.startswith(_VENDOR) and inner[len(_VENDOR):].startswith(_NEEDED):
                    member.name = inner[len(_VENDOR):]
                    members.append(member)
            tar.extractall(folder, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as error:
        why = str(error).splitlines()[0].rstrip(":")
        raise RuntimeError(f"{source} is not a whole .tar.gz ({why}): give a llama-cpp-python sdist .tar.gz or "
                           "its unpacked folder") from None


def _download(version: str, folder: Path) -> Path:
    """The llama-cpp-python `version` sdist, downloaded with pip into `folder`. Said in one line on stderr: pip's log
    went to stdout, which is the command's own output; a failure's message ends with pip's error."""
    print(f"downloading the llama-cpp-python {version} source with pip, once, for its converter", file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                           f"llama-cpp-python=={version}", "-d", str(folder)], capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr + done.stdout).strip().splitlines()
        why = " ".join(line for line in lines if line.startswith("ERROR:")) or (lines or ["no message"])[-1]
        raise RuntimeError(f"pip could not download the llama-cpp-python {version} sdist (offline? give --source): "
                           f"{why}")
    return folder / f"llama_cpp_python-{version}.tar.gz"


def convert(out: str | Path, checkpoint: str | Path = CHECKPOINT, *, outtype: str = "f32",
            source: str | Path | None = None) -> Path:
    """Write `checkpoint` as a GGUF file at `out` (a new file: nothing is overwritten); f32 keeps a bf16
    checkpoint's weights exactly.

    The checkpoint folder is not modified: its files are linked into a staging folder, next to a
    generated o200k_harmony tokenizer when it has none, and an untied lm_head when its embeddings are tied.
    The GGUF is written beside `out` and renamed when whole, so a failure or Ctrl-C leaves none.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    config = checked_folder(checkpoint)  # LoadError, one line
    if list(getattr(config, "architectures", None) or []) != ["GptOssForCausalLM"]:
        # llama.cpp's converter picks its code by this name: some of its handlers load the folder's tokenizer with
        # trust_remote_code=True, and a downloaded folder's own Python ran (a review)
        raise LoadError(f"{checkpoint}: its config names {getattr(config, 'architectures', None)!r}, not "
                        "['GptOssForCausalLM']: only a gpt-oss checkpoint is converted")
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out} already exists: give a new file name, nothing is overwritten")
    if not out.parent.is_dir():
        raise NotADirectoryError(f"{out.parent} is not a folder: make it first")
    partial = _reserved(out)
    try:
        script = converter(source)
        with tempfile.TemporaryDirectory(prefix="gptoss-gguf-") as staging:
            tied = bool(getattr(config, "tie_word_embeddings", False))
            for item in checkpoint.iterdir():  # the files a conversion reads, nothing else (no code, no other folder)
                if CHECKPOINT_FILES.fullmatch(item.name) and own_file(checkpoint, item) and not (
                        tied and (item.name == "config.json" or item.name.startswith("model.safetensors"))):
                    (Path(staging) / item.name).symlink_to(item.resolve())
            if tied:
                _untie(checkpoint, Path(staging))
            if not (checkpoint / "tokenizer.json").is_file():
                for name in tokenizer.FILES:
                    (Path(staging) / name).unlink(missing_ok=True)
                tokenizer.write(staging)
            name = "gpt-oss-tiny" if checkpoint.resolve() == CHECKPOINT.resolve() else checkpoint.resolve().name
            done = subprocess.run([sys.executable, str(script), staging, "--outfile", str(partial), "--outtype", outtype,
                                   "--model-name", name],
                                  capture_output=True, text=True)
        if done.returncode:   # its last line says why (a traceback's last line is the error)
            raise RuntimeError(f"convert_hf_to_gguf.py failed: {(done.stderr.strip().splitlines() or ['no message'])[-1]}")
        try:   # a link fails where `out` exists: a second run that checked the name first replaced the first's file
            os.link(partial, out)
        except FileExistsError:
            raise FileExistsError(f"{out} was written by another run meanwhile: give a new file name, nothing is "
                                  "overwritten") from None
    finally:
        partial.unlink(missing_ok=True)
    return out


def _reserved(out: Path) -> Path:
    """The empty file beside `out` that the converter writes into, made first: a folder it cannot write in (`/proc`,
    a read-only mount) failed after the whole conversion, naming this hidden file; an OSError naming `out` now."""
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        partial.touch(exist_ok=False)
    except OSError as error:
        raise OSError(f"cannot write {out}: {error.strerror or error}") from None
    return partial


def _untie(checkpoint: Path, staging: Path) -> None:
    """Give a tied-embedding checkpoint its own lm_head: llama.cpp's gpt-oss graph needs `output.weight`."""
    from safetensors.torch import load_file, save_file

    tensors = {}
    for shard in own_weight_files(checkpoint, str(checkpoint)):   # not a stray file, nor a link out of it
        tensors.update(load_file(shard))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, staging / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((checkpoint / "config.json").read_text())
    (staging / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}, indent=2))


def serve_command(gguf: str | Path, *, model: str = "gpt-oss-tiny", host: str = "127.0.0.1", port: int = 8000,
                  n_ctx: int = 12288) -> list[str]:
    """The `python -m llama_cpp.server` command line that serves `gguf` under the name `model`, with tiny's
    context (the server's own default is 2 048 tokens: a few turns with tool output)."""
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", model,
            "--host", host, "--port", str(port), "--n_ctx", str(n_ctx)]


def main(argv: list[str] | None = None) -> None:
    """Command line: convert, then print the command that serves the GGUF."""
    parser = Parser(
        prog="python -m gptoss_lab.tiny.llamacpp",
        description="Convert gpt-oss-tiny (or any GptOss checkpoint folder) to a GGUF file with llama.cpp's own "
                    "converter, and print the command that serves it.",
        epilog="example: python -m gptoss_lab.tiny.llamacpp /tmp/gpt-oss-tiny.gguf, then "
               f"Session.connect('http://127.0.0.1:8000') (see {guide('remote.md')})")
    parser.add_argument("out", type=path, help="the GGUF file to write (a new file: nothing is overwritten)")
    parser.add_argument("--checkpoint", type=checkpoint_folder, default=CHECKPOINT,
                        help="a GptOss checkpoint folder, or tiny (the default: gpt-oss-tiny)")
    parser.add_argument("--outtype", default="f32", choices=("f32", "bf16", "f16", "q8_0"),
                        help="f32 keeps bf16 weights exactly (default: %(default)s)")
    parser.add_argument("--source", help="llama-cpp-python sdist (.tar.gz or folder) holding convert_hf_to_gguf.py "
                        "(default: $LLAMA_CPP_SDIST, or the installed version's, fetched with pip once)")
    args = parser.parse_args(argv)
    try:
        out = convert(args.out, args.checkpoint, outtype=args.outtype, source=args.source)
    except LoadError as error:   # --checkpoint: a usage error, as evaluate says a missing checkpoint
        parser.error(str(error))
    except (OSError, RuntimeError) as error:
        parser.fail(error)
    except KeyboardInterrupt:
        parser.exit(130, f"interrupted: nothing written to {args.out}\n")
    print(f"wrote {out}; serve it with:\n  " + shlex.join(serve_command(out)))   # quoted: a path may hold spaces


if __name__ == "__main__":
    command(main)
