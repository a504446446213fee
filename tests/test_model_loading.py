"""Model references: packaged name, GGUF path, local directory, hub id."""
from __future__ import annotations

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
