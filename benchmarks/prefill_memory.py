"""Peak memory of one batched prompt pass: every layer's hidden states kept, or the chosen ones.

The backend reads the hidden states of two layers (the middle and the last) at
the prompt's last position and their mean over the prompt. Asking the model
for all hidden states keeps ``num_layers + 1`` tensors of ``batch × width ×
hidden`` until the pass returns (36 KB per token for SmolLM2 in bfloat16,
more than its KV cache, 23 KB); asking for a list keeps only those layers.
Each mode runs in a fresh process, since freed memory stays resident
(:mod:`bench.models.allocator`), and the figure is the growth of the peak
resident set over the resident set just before the pass.

Run ``python -m benchmarks.prefill_memory --passages 15 --batch 16 [--cache-dir DIR]``: IRCoT's
prompts carry up to 15 passages (about 3,000 tokens).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("all", "chosen")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def measure(mode: str, passages: int, batch: int, cache_dir: str, dtype: str) -> dict:
    """One prefill of ``batch`` RAG prompts in this process; the peak-RSS growth in MiB."""
    import torch

    from bench.data import resolve_source
    from bench.models.hf_backend import HFBackend
    from bench.models.loading import DEFAULT_MODEL, load_model, resolve_model
    from bench.perf.lm import encode, prefill
    from bench.prompts import DEFAULT_TEMPLATE, TEMPLATES

    torch.set_num_threads(2)
    ref = resolve_model(DEFAULT_MODEL, cache_dir)
    model, tokenizer = load_model(ref, cache_dir, dtype=dtype)
    source = resolve_source("demo")
    corpus = list(source.corpus().passages)
    questions = source.questions(source.dataset_names()[0], "test")
    render = HFBackend(model, tokenizer, ref.fingerprint).chat_prompt
    template = TEMPLATES[DEFAULT_TEMPLATE]
    texts = [render(template.augmented(questions[i % len(questions)].question,
                                       [corpus[(i + j) % len(corpus)] for j in range(passages)]))
             for i in range(batch)]
    ids, mask = encode(tokenizer, texts)
    before = _status_kib("VmRSS")
    with torch.inference_mode():
        out, _ = prefill(model, ids, mask, all_hidden_states=mode == "all")
        kept = sum(1 for h in out.hidden_states if h is not None)
    return {"mode": mode, "batch": batch, "width": int(ids.shape[1]),
            "tokens": int(mask.sum()), "hidden_states_kept": kept,
            "peak_growth_mib": (_status_kib("VmHWM") - before) / 1024}


def main(argv: list[str] | None = None) -> int:
    from bench.config import default_cache_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cache-dir", default=default_cache_dir(),
                        help="arbench cache holding the converted model")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(measure(args.mode, args.passages, args.batch, args.cache_dir,
                                 args.dtype)))
        return 0
    rows = []
    for mode in MODES:
        done = subprocess.run([sys.executable, "-m", "benchmarks.prefill_memory", "--mode", mode,
                               *(argv if argv is not None else sys.argv[1:])],
                              cwd=REPO, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"batch {first['batch']} × width {first['width']} ({first['tokens']:,} real tokens), "
          f"{args.dtype}")
    for row in rows:
        print(f"  hidden states {row['mode']:>6} ({row['hidden_states_kept']:>2} kept): "
              f"peak +{row['peak_growth_mib']:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
