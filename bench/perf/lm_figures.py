"""The language-model sections of ``arbench bench``: timings of :mod:`bench.perf.lm` as figures."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.models.attention import PADDED_SDPA
from bench.models.hf_backend import GreedyConfig, HFBackend, SamplingConfig
from bench.models.loading import ModelRef
from bench.perf.figures import BenchReport, achieved_gflops, gemm_fraction
from bench.perf.lm import (
    MatmulParameters,
    PromptSet,
    attention_implementation,
    time_decode,
    time_load,
    time_prefill,
    time_sampling,
)

MODEL, PREFILL, DECODE, SAMPLING = "Model", "Prefill", "Decode", "N samples, one prefill"
KERNELS = "Attention and KV cache (arbench vs transformers defaults)"
PREFIX = "Prefix KV reuse (--prefix-cache)"


def add_model_figures(report: BenchReport, params: MatmulParameters, ref: ModelRef,
                      cache_dir: str | Path, dtype: str, rounds: int) -> None:
    """Product weights (the FLOP count's basis) and the load time from the converted cache."""
    report.methods[MODEL] = (
        "FLOPs = 2 x product weights x tokens: the nn.Linear weights of the decoder layers "
        "run for every token, the LM head (counted even when tied to the embedding) for "
        "every decoded token but once per sequence in a prefill (logits_to_keep=1); the "
        "embedding lookup, norms and attention's score/value products are not counted. "
        f"Load: load_model from the converted safetensors, after a first load, best of "
        f"{rounds}")
    report.add("model_layer_params", params.per_token, "weights",
               "decoder-layer product weights", MODEL)
    report.add("model_lm_head_params", params.lm_head, "weights", "LM head weights", MODEL)
    report.add("model_load_seconds", time_load(ref, cache_dir, dtype, rounds), "s",
               "model load from converted cache", MODEL)


def add_prefill_figures(report: BenchReport, model, tokenizer, sets: Sequence[PromptSet],
                        params: MatmulParameters, bound: float, rounds: int,
                        source: str) -> None:
    """Prefill tokens/s and its GEMM-bound fraction for each prompt kind."""
    batch = len(sets[0].texts)
    report.methods[PREFILL] = (
        f"one forward pass over a left-padded batch of {batch} prompts ({source}), "
        f"logits_to_keep=1, KV cache and hidden states on as in HFBackend; best of {rounds} "
        "after an untimed pass; tokens/s counts real (unpadded) prompt tokens")
    for prompts in sets:
        timing = time_prefill(model, tokenizer, prompts.texts, rounds)
        rate = timing.tokens / timing.seconds
        gflops = achieved_gflops(params.per_token, rate, params.lm_head,
                                 timing.sequences / timing.seconds)
        padding = 1 - timing.tokens / timing.padded_tokens
        report.add(f"prefill_{prompts.key}_tokens_per_s", rate, "tokens/s",
                   f"prefill {prompts.label}", PREFILL,
                   f"{timing.tokens / timing.sequences:.0f} tokens/prompt, "
                   f"padding {padding:.0%}")
        report.add(f"prefill_{prompts.key}_prompt_tokens", timing.tokens / timing.sequences,
                   "tokens/prompt", f"  prompt length, {prompts.key}", PREFILL)
        report.add(f"prefill_{prompts.key}_gemm_fraction", gemm_fraction(gflops, bound),
                   "of GEMM bound", f"  GEMM-bound fraction, {prompts.key}", PREFILL,
                   f"{gflops:.1f} GFLOPS")


def add_decode_figures(report: BenchReport, model, tokenizer, texts: Sequence[str],
                       batches: Sequence[int], steps: int, params: MatmulParameters,
                       bound: float, rounds: int, prompts: str) -> None:
    """Decode tokens/s (decode steps only) and the GEMM-bound fraction at each batch size."""
    report.methods[DECODE] = (
        f"per round an untimed prefill of the batch ({prompts}), then "
        f"{steps} timed greedy single-token forward passes over the KV cache (no EOS stop, "
        f"so every row decodes {steps} tokens); tokens/s = batch x {steps} / loop seconds, "
        f"best of {rounds}; HFBackend's per-step statistics (entropies, top-k) excluded")
    for batch in batches:
        rows = [texts[i % len(texts)] for i in range(batch)]
        seconds = time_decode(model, tokenizer, rows, steps, rounds)
        rate = batch * steps / seconds
        gflops = achieved_gflops(params.per_token + params.lm_head, rate)
        report.add(f"decode_batch{batch}_tokens_per_s", rate, "tokens/s",
                   f"decode, batch {batch}", DECODE, f"{seconds / steps * 1000:.1f} ms/step")
        report.add(f"decode_batch{batch}_gemm_fraction", gemm_fraction(gflops, bound),
                   "of GEMM bound", f"  GEMM-bound fraction, batch {batch}", DECODE,
                   f"{gflops:.1f} GFLOPS")


def add_sampling_figures(report: BenchReport, backend: HFBackend, prompt: str, key: str,
                         greedy: GreedyConfig, sampling: SamplingConfig, rounds: int) -> None:
    """What N samples cost against one greedy answer, and proof they share one prefill."""
    timing = time_sampling(backend, prompt, key, greedy, sampling, rounds)
    n = timing.n
    report.methods[SAMPLING] = (
        f"HFBackend.sample (n={n}, T={sampling.temperature}, top-k {sampling.top_k}, "
        f"<= {sampling.max_new_tokens} tokens) and HFBackend.greedy (<= "
        f"{greedy.max_new_tokens} tokens) on one {timing.prompt_tokens}-token closed-book "
        f"prompt, best of {rounds}; prefills as counted by the backend's CallCounter and as "
        "model calls over more than one position (forward hook)")
    report.add(f"sample_n{n}_prefills_counted", timing.prefills_counted, "prefills",
               f"prefills counted for {n} samples", SAMPLING,
               f"{timing.prompt_tokens_counted} prompt tokens counted for a "
               f"{timing.prompt_tokens}-token prompt")
    report.add(f"sample_n{n}_prefill_calls", timing.prefill_calls, "model calls",
               f"prefill model calls for {n} samples", SAMPLING,
               f"{timing.prefill_rows} row(s); then {timing.decode_calls} decode calls "
               f"of {timing.sequences} rows")
    report.add(f"sample_n{n}_seconds", timing.sample_seconds, "s", f"{n} samples", SAMPLING)
    report.add("greedy_answer_seconds", timing.greedy_seconds, "s", "1 greedy answer",
               SAMPLING)
    report.add(f"sample_n{n}_over_greedy", timing.sample_seconds / timing.greedy_seconds,
               "x", f"{n} samples / 1 greedy answer", SAMPLING)


def add_kernel_figures(report: BenchReport, model, tokenizer, prompts: PromptSet,
                       batch: int, steps: int, rounds: int) -> None:
    """What padded_sdpa and the reserved KV room save on long (RAG) prompts.

    Both give the same bits as transformers' defaults (``tests/test_attention.py``,
    ``tests/test_kv_room.py``); these figures time one against the other.
    """
    rows = [prompts.texts[i % len(prompts.texts)] for i in range(batch)]
    report.methods[KERNELS] = (
        f"{prompts.label} prompts, batch {batch}: one prefill with transformers' 'sdpa' "
        f"attention and with arbench's '{PADDED_SDPA}' (additive mask, grouped heads in the "
        f"kernel); then {steps} greedy decode steps appending to transformers' cache "
        "(torch.cat every step) and writing into reserved KV room; best of "
        f"{rounds} each")
    timings = {}
    for name in ("sdpa", PADDED_SDPA):
        with attention_implementation(model, name):
            timings[name] = time_prefill(model, tokenizer, rows, rounds)
    tokens = timings[PADDED_SDPA].tokens
    for name, label in (("sdpa", "transformers sdpa"), (PADDED_SDPA, PADDED_SDPA)):
        report.add(f"prefill_{prompts.key}_{name}_tokens_per_s", tokens / timings[name].seconds,
                   "tokens/s", f"prefill, {label}", KERNELS,
                   f"{tokens / batch:.0f} tokens/prompt")
    report.add(f"prefill_{prompts.key}_padded_sdpa_speedup",
               timings["sdpa"].seconds / timings[PADDED_SDPA].seconds, "x",
               f"  {PADDED_SDPA} speed-up", KERNELS)
    growing = time_decode(model, tokenizer, rows, steps, rounds, room=False)
    roomy = time_decode(model, tokenizer, rows, steps, rounds, room=True)
    for key, label, seconds in (("growing", "growing cache (cat)", growing),
                                ("room", "reserved KV room", roomy)):
        report.add(f"decode_{prompts.key}_{key}_ms_per_step", seconds / steps * 1000,
                   "ms/step", f"decode, {label}", KERNELS,
                   f"{batch * steps / seconds:.1f} tokens/s")
    report.add(f"decode_{prompts.key}_room_speedup", growing / roomy, "x",
               "  KV-room speed-up", KERNELS)


def add_prefix_figures(report: BenchReport, backend: HFBackend, prompts: PromptSet,
                       rounds: int) -> None:
    """Prefill of one batch with and without the shared prefix encoded once."""
    from bench.perf.lm import time_backend_prefill

    report.methods[PREFIX] = (
        f"HFBackend's prompt pass over {len(prompts.texts)} {prompts.label} prompts, best "
        f"of {rounds}: in full, and with their common prefix taken from the prefix memo "
        "(a later batch of the same template) so only the suffixes are encoded")
    full, shared, prefix = time_backend_prefill(backend, prompts.texts, rounds)
    report.add("prefix_common_tokens", prefix, "tokens", "common prefix", PREFIX,
               f"of {prompts.label} prompts")
    report.add("prefill_full_seconds", full, "s", "prefill in full", PREFIX)
    report.add("prefill_shared_prefix_seconds", shared, "s", "prefill, prefix reused", PREFIX)
    report.add("prefix_cache_speedup", full / shared, "x", "  prefix-reuse speed-up", PREFIX)
