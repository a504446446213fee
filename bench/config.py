"""The resolved configuration of a run: every knob, with its default, in one place."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.models.hf_backend import GreedyConfig, SamplingConfig
from bench.models.loading import DEFAULT_MODEL
from bench.prompts import DEFAULT_TEMPLATE

CACHE_ENV_VAR = "ARBENCH_CACHE"


def default_cache_dir() -> str:
    """``$ARBENCH_CACHE``, else ``$XDG_CACHE_HOME/arbench``, else ``~/.cache/arbench``."""
    if os.environ.get(CACHE_ENV_VAR):
        return os.environ[CACHE_ENV_VAR]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "arbench")


@dataclass
class RunConfig:
    """All inputs that determine a run's results (written as ``config.json``).

    ``cache_dir``, ``results_dir``, ``progress``, ``batch_size`` and the Ray
    settings affect where and how fast, not what, and are excluded from
    :meth:`identity` (batch size can change the last bits of bf16 arithmetic;
    see README; a Ray run forms the same batches as one process).
    """

    run_name: str | None = None
    data_dir: str | None = None
    hub: bool = False
    corpus: str | None = None
    datasets: list[str] = field(default_factory=lambda: ["all"])
    limit: int | None = None
    model: str = DEFAULT_MODEL
    dtype: str = "bfloat16"
    trust_remote_code: bool = False
    retriever: str = "bm25s"
    top_k: int = 5
    estimators: list[str] = field(default_factory=lambda: ["all"])
    #: Adaptive-RAG pipelines run on test (bench.pipelines); none by default.
    pipelines: list[str] = field(default_factory=list)
    #: Per-pipeline setting overrides: {pipeline: {setting: value}}.
    pipeline_settings: dict[str, dict] = field(default_factory=dict)
    #: Second model of the cross-model pipelines (Rowen-CM, Rowen-Hybrid).
    verifier_model: str = "qwen2.5-coder-0.5b"
    #: Similarity/entailment judge for consistency estimators (bench.judges).
    judge: str = "minilm"
    #: Corpus passages embedded as relative Mahalanobis's background.
    background_passages: int = 200
    template: str = DEFAULT_TEMPLATE
    greedy: GreedyConfig = field(default_factory=GreedyConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    include_stop_token: bool = True
    seed: int = 0
    dev_fraction: float = 0.2
    batch_size: int = 16
    #: Prefill a batch's shared prompt prefix once (HFBackend prefix_cache). It changes
    #: the last bits of the arithmetic, so its generations are cached apart.
    prefix_cache: bool = False
    threads: int | None = None
    #: Phase 1 on Ray (bench.distributed): a cluster address or "local"; None = one process.
    ray: str | None = None
    #: Worker processes (local cluster size, or actors on a cluster; default: its CPUs).
    ray_workers: int | None = None
    #: Shards per dataset, or questions per shard (rounded to whole batches).
    shards: int | None = None
    shard_size: int | None = None
    cache_dir: str = field(default_factory=default_cache_dir)
    results_dir: str = "results"
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Inverse of :meth:`to_dict` (a saved ``config.json``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown field(s) {unknown}")
        values = dict(data)
        for name, kind in (("greedy", GreedyConfig), ("sampling", SamplingConfig)):
            if name in values:
                part = dict(values[name])
                if part.get("layers") is not None:
                    part["layers"] = tuple(part["layers"])
                values[name] = kind(**part)
        return cls(**values)

    def identity(self) -> dict:
        """The fields that determine results."""
        skip = {"cache_dir", "results_dir", "progress", "batch_size", "threads", "run_name",
                "ray", "ray_workers", "shards", "shard_size"}
        # Opt-in switches join only when on, so runs without them keep their hashes.
        skip |= {name for name in ("prefix_cache",) if not getattr(self, name)}
        return {f.name: v for f in fields(self) if f.name not in skip
                for v in [asdict(self)[f.name]]}
