"""A HuggingFace tokenizer for o200k_harmony, built from the bundled vocabulary.

`write(folder)` puts `tokenizer.json` (byte-level BPE with merges derived from the tiktoken
ranks, the o200k pre-tokenizer, every Harmony special token at its id), its small config
files and `chat_template.jinja` (the Harmony prompt, for `apply_chat_template`) into a checkpoint
folder, so `AutoTokenizer`, llama.cpp's converter and vLLM can load the model. `tokenizer.json` is
8.5 MB (3 MB gzipped), so it is generated rather than stored in git:
`python -m gptoss_lab.tiny.tokenizer FOLDER`.
"""
from __future__ import annotations

from . import Parser, command, importing

with importing(__name__):   # Ctrl-C while the command starts: one line, as in its work (torch takes seconds)
    import json
    import shlex
    import shutil
    from collections.abc import Iterable
    from pathlib import Path

    from . import CHECKPOINT, cache_dir, checkpoint_folder, new_folder

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
_CHAT_TEMPLATE = CHECKPOINT / "chat_template.jinja"   # the lab's Harmony rendering as Jinja: one copy, gpt-oss-tiny's
_SPECIAL_MAP = {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (what byte-level BPE stores)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}


def _merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge BPE makes to build `token`: run BPE on its bytes with lower-ranked merges only."""
    limit = ranks[token]
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1], limit)
            if rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {limit}) is not reachable by BPE merges")
    return parts[0], parts[1]


def tokenizer_json() -> dict:
    """The `tokenizer.json` document for o200k_harmony."""
    from .. import harmony   # here: openai-harmony and the settings it brings are of no use to --help

    ranks = harmony.ranks()
    to_text = _byte_to_unicode()

    def text(token: bytes) -> str:
        return "".join(to_text[b] for b in token)

    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = [[text(a), text(b)] for a, b in (_merge_of(t, ranks) for t in sorted(ranks, key=ranks.get) if len(t) > 1)]
    added = [
        {"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, name in harmony.special_tokens().items()
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": harmony.O200K_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True, "vocab": vocab, "merges": merges},
    }


def _texts() -> dict[str, str]:
    """The contents of each of FILES, as `write` writes them."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072,
              "add_bos_token": False, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"],
              **_SPECIAL_MAP}
    return {"tokenizer.json": json.dumps(tokenizer_json(), ensure_ascii=False),
            "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
            "special_tokens_map.json": json.dumps(_SPECIAL_MAP, indent=2) + "\n",
            "chat_template.jinja": _CHAT_TEMPLATE.read_text(encoding="utf-8")}


def _theirs(folder: Path, ours: dict[str, str]) -> list[str]:
    """The tokenizer files in `folder` that `write` did not write (another tokenizer's, a chat template): a link,
    or a file whose contents differ from `ours` (`_texts()`)."""
    return [name for name in FILES if (path := folder / name).is_symlink() or path.exists() and not (
        path.is_file() and path.stat().st_size == len(ours[name].encode()) and path.read_text("utf-8") == ours[name])]


def _refuse_theirs(folder: Path, ours: dict[str, str]) -> None:
    """A one-line ValueError when `folder` has another tokenizer's files (see `_theirs`): they are never overwritten."""
    if there := _theirs(folder, ours):
        raise ValueError(f"{folder} already has its own {there[0]}: nothing overwritten (remove it to write a new one)")


def write(folder: str | Path, names: Iterable[str] = FILES, *, texts: dict[str, str] | None = None) -> Path:
    """Write `names` (all of FILES by default) into `folder` (made if missing).

    Each file is written beside its name and renamed when all are whole, so a failure or Ctrl-C halfway leaves
    none of them (nor the folder, if this made it). `texts`: `_texts()` when the caller has it (it takes ~2 s)."""
    folder, texts = Path(folder), texts or _texts()
    made = not folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    partials = {folder / f".{name}.partial": folder / name for name in names}
    try:
        for partial, final in partials.items():
            partial.write_text(texts[final.name], encoding="utf-8")
        for partial, final in partials.items():
            partial.replace(final)
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        if made:
            folder.rmdir()
        raise
    return folder


def ensure(folder: str | Path) -> Path:
    """Write the tokenizer files missing from `folder`, and only those; a one-line ValueError, nothing written, when
    one there is another tokenizer's (as the command refuses it)."""
    folder = Path(folder)
    missing = [name for name in FILES if not ((folder / name).exists() or (folder / name).is_symlink())]
    if missing:
        texts = _texts()
        _refuse_theirs(folder, texts)
        write(folder, missing, texts=texts)
    return folder


def tiny_copy(out: Path) -> Path:
    """gpt-oss-tiny with its tokenizer files, made anew in `out`: what `tokenizer tiny` writes (into the user's cache),
    as the installed package may be read-only (a system, Docker or shared install) and is not the user's to change."""
    from ..engines.checkpoint import CHECKPOINT_FILES

    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)   # the lab's own copy, from an earlier run (or another version of the package)
    with new_folder(out) as partial:
        for item in CHECKPOINT.iterdir():
            if CHECKPOINT_FILES.fullmatch(item.name) and item.name not in FILES:
                shutil.copyfile(item, partial / item.name)
        write(partial)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: write the tokenizer files into FOLDER and print the tokenizer.json path."""
    p = Parser(prog="python -m gptoss_lab.tiny.tokenizer",
                                description="Write the Harmony (o200k) tokenizer files of a GptOss checkpoint into FOLDER.",
                                epilog="example: python -m gptoss_lab.tiny.tokenizer tiny, then AutoTokenizer."
                                       "from_pretrained, vLLM or llama.cpp can read gpt-oss-tiny with its tokenizer, "
                                       "copied into your cache: the folder of the file it prints")
    p.add_argument("folder", type=checkpoint_folder, help="a checkpoint folder (made if missing; tiny: gpt-oss-tiny, "
                   "copied with its tokenizer into your cache, as the installed package is left as it is) that has none of "
                   + ", ".join(FILES) + " but the ones this command writes: a checkpoint's own tokenizer files are never "
                   "overwritten")
    folder = p.parse_args(argv).folder
    if folder.exists() and not folder.is_dir():
        p.error(f"{folder} is not a folder")
    bundled = folder.resolve() == CHECKPOINT.resolve()
    target = cache_dir() / "gpt-oss-tiny" if bundled else folder
    try:
        if bundled:
            written = tiny_copy(target) / "tokenizer.json"
        else:
            texts = _texts()
            _refuse_theirs(folder, texts)   # the lab's own files (gpt-oss-tiny's config) are written again; no other's
            written = write(folder, texts=texts) / "tokenizer.json"
    except ValueError as error:
        p.error(str(error))
    except OSError as error:
        said = f"cannot write {target}: {error.strerror}" if error.strerror else str(error)   # new_folder's own line
        p.error(said + (f"; gpt-oss-tiny with its tokenizer goes to your cache folder, not into the installed package: "
                        f"copy it (cp -r {shlex.quote(str(CHECKPOINT))} my-tiny) and write into the copy" if bundled else ""))
    except KeyboardInterrupt:   # `write` and `new_folder` make their files whole before they rename them into place
        p.exit(130, f"interrupted: no partial file was left in {target}\n")
    print(written)   # not in the try: a reader gone from stdout was "cannot write FOLDER" (it was written)


if __name__ == "__main__":
    command(main)
