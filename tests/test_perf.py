"""``arbench bench``: the GEMM-bound arithmetic, the output format, and one quick real run.

Nothing here asserts on speed: the quick run checks that every figure is
measured (present, positive, finite) and that the counts it reports are the
model's true ones.
"""
from __future__ import annotations

import json
import math

import pytest

from bench.perf.figures import (
    SCHEMA,
    BenchReport,
    achieved_gflops,
    check_document,
    format_table,
    format_value,
    gemm_flops,
    gemm_fraction,
    per_thousand,
    to_json,
)

#: Every figure a run reports (quick or full; decode batches 1, 8, 32; n = 10 samples).
EXPECTED_FIGURES = [
    "gemm_bf16_512x576x1536_gflops", "gemm_bf16_1024x1024x1024_gflops",
    "gemm_fp32_512x576x1536_gflops", "gemm_fp32_1024x1024x1024_gflops",
    "gemm_bf16_bound_gflops",
    "model_layer_params", "model_lm_head_params", "model_load_seconds",
    *[f"prefill_{kind}_{what}" for kind in ("closed_zero_shot", "closed_fewshot", "rag_top5")
      for what in ("tokens_per_s", "prompt_tokens", "gemm_fraction")],
    *[f"decode_batch{b}_{what}" for b in (1, 8, 32) for what in ("tokens_per_s", "gemm_fraction")],
    *[f"prefill_rag_top5_{what}" for what in ("sdpa_tokens_per_s", "padded_sdpa_tokens_per_s",
                                              "padded_sdpa_speedup")],
    *[f"decode_rag_top5_{what}" for what in ("growing_ms_per_step", "room_ms_per_step",
                                             "room_speedup")],
    "prefix_common_tokens", "prefill_full_seconds", "prefill_shared_prefix_seconds",
    "prefix_cache_speedup",
    "sample_n10_prefills_counted", "sample_n10_prefill_calls", "sample_n10_seconds",
    "greedy_answer_seconds", "sample_n10_over_greedy",
    "estimator_suite_ms_per_question", "estimator_untrained_ms_per_question",
    "rescore_seconds_per_1000_questions",
    "bm25s_queries_per_s", "rank_bm25_queries_per_s",
]


# -- arithmetic -----------------------------------------------------------------------
def test_gemm_flops_counts_one_multiply_add_as_two():
    assert gemm_flops(512, 576, 1536) == 905_969_664  # 2 * 512 * 576 * 1536
    assert gemm_flops(1, 1, 1) == 2


def test_achieved_gflops_and_fraction_of_the_gemm_bound():
    # 100M weights per token at 1,000 tokens/s: 2 * 1e8 * 1e3 = 2e11 FLOP/s = 200 GFLOPS.
    assert achieved_gflops(100e6, 1000.0) == pytest.approx(200.0)
    # Plus a 28M-weight head once per sequence at 2 sequences/s: + 2 * 28e6 * 2 = 0.112 GFLOPS.
    assert achieved_gflops(100e6, 1000.0, 28e6, 2.0) == pytest.approx(200.112)
    assert gemm_fraction(200.112, 400.0) == pytest.approx(0.50028)
    # SmolLM2-135M decoding 50 tokens/s at batch 1 against a 250 GFLOPS bound:
    # 2 * (106,168,320 + 28,311,552) * 50 = 13.447987 GFLOPS -> 0.05379195.
    gflops = achieved_gflops(106_168_320 + 28_311_552, 50.0)
    assert gflops == pytest.approx(13.4479872)
    assert gemm_fraction(gflops, 250.0) == pytest.approx(0.0537919488)


def test_gemm_fraction_rejects_a_bound_that_is_not_positive():
    with pytest.raises(ValueError, match="GEMM bound must be positive"):
        gemm_fraction(10.0, 0.0)
    with pytest.raises(ValueError, match="GEMM bound must be positive"):
        gemm_fraction(10.0, float("nan"))


def test_per_thousand_scales_seconds_to_a_thousand_items():
    assert per_thousand(0.25, 50) == pytest.approx(5.0)
    assert per_thousand(3.0, 1000) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="at least one item"):
        per_thousand(1.0, 0)


def test_matmul_parameters_counts_linear_weights_and_the_tied_head():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.perf.lm import matmul_parameters

    config = LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=16,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=4, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    counted = matmul_parameters(model)
    # Per layer: q 8x8 = 64, k 8x4 = 32, v 32, o 64, gate 8x16 = 128, up 128, down 128
    # = 576; two layers 1,152. The head (tied) 11 x 8 = 88.
    assert counted.per_token == 1152
    assert counted.lm_head == 88
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_gemm_gflops_measures_a_real_product_and_rejects_empty_shapes():
    from bench.perf.calibration import gemm_gflops

    assert gemm_gflops("float32", shape=(16, 8, 4), repeats=2) > 0
    with pytest.raises(ValueError, match="must be positive"):
        gemm_gflops("float32", shape=(0, 8, 4))


# -- output ---------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "text"), [
    (1234.6, "1,235"), (238.4, "238"), (3.0, "3"), (0.0, "0"), (12.3456, "12.35"),
    (0.012345, "0.0123"), (1.5e-6, "1.50e-06"), (-2.5, "-2.50"), (float("nan"), "nan"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def _report() -> BenchReport:
    report = BenchReport(environment={"torch_version": "2.13.0", "torch_threads": 2,
                                      "cpu_count": 2, "load_average_start": [1.5, 1.25, 1.0],
                                      "load_average_end": [2.0, 1.5, 1.0]})
    report.methods["Decode"] = "timed loop"
    report.add("decode_batch1_tokens_per_s", 42.5, "tokens/s", "decode, batch 1", "Decode",
               "23.5 ms/step")
    report.add("bm25s_queries_per_s", 12000.0, "queries/s", "BM25 bm25s", "Retrieval")
    return report


def test_table_has_environment_sections_methods_and_units():
    lines = format_table(_report()).splitlines()
    assert lines[0] == ("arbench bench  torch 2.13.0, 2 threads, 2 CPUs, load average "
                        "(1/5/15 min) 1.50/1.25/1.00 at start")
    assert lines[-1] == "load average (1/5/15 min) 2.00/1.50/1.00 at end"
    assert lines.index("== Decode") < lines.index("== Retrieval")
    assert "   method: timed loop" in lines
    decode = next(line for line in lines if "decode, batch 1" in line)
    assert decode.split() == ["decode,", "batch", "1", "42.50", "tokens/s", "23.5", "ms/step"]
    bm25 = next(line for line in lines if "BM25 bm25s" in line)
    assert bm25.split() == ["BM25", "bm25s", "12,000", "queries/s"]


def test_json_document_holds_every_figure_with_its_unit():
    document = json.loads(json.dumps(to_json(_report())))
    assert document["schema"] == SCHEMA
    assert document["figures"]["decode_batch1_tokens_per_s"] == {
        "value": 42.5, "unit": "tokens/s", "label": "decode, batch 1", "section": "Decode",
        "note": "23.5 ms/step"}
    assert document["environment"]["load_average_start"] == [1.5, 1.25, 1.0]
    assert check_document(document) == []


def test_check_document_names_each_problem():
    document = to_json(_report())
    document["figures"]["decode_batch1_tokens_per_s"]["value"] = float("nan")
    document["figures"]["bm25s_queries_per_s"]["unit"] = ""
    assert check_document(document) == [
        "decode_batch1_tokens_per_s: value nan is not a finite number",
        "bm25s_queries_per_s: missing unit"]
    assert check_document({"schema": "other", "figures": {}}) == [
        f"schema is 'other', expected {SCHEMA!r}", "no figures"]


def test_a_figure_key_cannot_be_recorded_twice():
    report = _report()
    with pytest.raises(ValueError, match="recorded twice"):
        report.add("bm25s_queries_per_s", 1.0, "queries/s", "again", "Retrieval")


# -- the command ----------------------------------------------------------------------
def test_default_data_dir_is_shared_data_beside_the_checkout_else_demo(tmp_path, monkeypatch):
    from bench.perf.command import default_data_dir

    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_data_dir() == "demo"
    corpus = tmp_path / "shared" / "data" / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "wiki_passages.jsonl").write_text('{"id": "p", "title": "", "text": "x"}\n')
    assert default_data_dir() == "../shared/data"


def test_bad_arguments_stop_with_one_line(tmp_path, capsys):
    from bench.cli import main

    assert main(["bench", "--threads", "0"]) == 2
    assert capsys.readouterr().err == "arbench: error: --threads must be at least 1, got 0\n"
    missing = tmp_path / "nowhere"
    assert main(["bench", "--data-dir", str(missing), "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"arbench: error: {missing}: data directory not found\n"


def test_quick_bench_on_demo_data_reports_every_figure(tmp_path, model_cache, capsys):
    """The whole command in-process.

    About 20 s with a warm test cache on the loaded 2-core machine; on a fresh
    cache the quick statistics of 8 demo questions are computed once first
    (about 2 minutes, mostly ICM's self-labelling and the reasoning chains).
    """
    import torch

    from bench.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--data-dir", "demo", "--cache-dir", str(model_cache),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    assert check_document(document) == []
    figures = document["figures"]
    assert sorted(figures) == sorted(EXPECTED_FIGURES)
    for key in EXPECTED_FIGURES:
        value = figures[key]["value"]
        assert math.isfinite(value) and value > 0, (key, value)
        assert figures[key]["label"] in printed
    # The default model's true sizes: 30 layers of (q 576x576, k and v 576x192, o 576x576,
    # gate/up/down 576x1536) = 30 x 3,538,944; the head 49,152 x 576.
    assert figures["model_layer_params"]["value"] == 106_168_320
    assert figures["model_lm_head_params"]["value"] == 28_311_552
    # Ten samples of one prompt: one prefill, counted by the backend and seen by the hook.
    assert figures["sample_n10_prefills_counted"]["value"] == 1
    assert figures["sample_n10_prefill_calls"]["value"] == 1
    # Few-shot prompts are longer than zero-shot ones, RAG prompts longer still.
    lengths = [figures[f"prefill_{k}_prompt_tokens"]["value"]
               for k in ("closed_zero_shot", "closed_fewshot", "rag_top5")]
    assert lengths == sorted(lengths) and len(set(lengths)) == 3
    env = document["environment"]
    assert env["torch_version"] == torch.__version__
    assert env["torch_threads"] == torch.get_num_threads()
    for average in env["load_average_start"] + env["load_average_end"]:
        assert math.isfinite(average) and average >= 0
    estimator_seconds = document["details"]["estimator_seconds"]
    import estimators

    assert sorted(estimator_seconds) == sorted(estimators.ESTIMATORS)
    assert "figures written to" in printed
    # Each section printed once, as it was measured, in measurement order.
    sections = [line[3:].split("  (")[0] for line in printed.splitlines()
                if line.startswith("== ")]
    assert sections == ["GEMM calibration", "Model", "Prefill", "Decode",
                        "Attention and KV cache (arbench vs transformers defaults)",
                        "Prefix KV reuse (--prefix-cache)",
                        "N samples, one prefill", "Estimators and rescoring", "Retrieval"]
    assert list(document["details"]["load_after_section"]) == sections
