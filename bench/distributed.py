"""``arbench run --ray``: fill the output cache on a Ray cluster, then run as one process.

Phase 1 (Ray workers) computes every model output that :func:`bench.runner.model_outputs`
needs (the statistics of train + test and the augmented test answers) and writes it into
the shared content-hashed cache. Phase 2 is the ordinary single-process
:func:`bench.runner.run`, which finds those outputs cached, makes no LM call for them and
writes the results. Data flows one way: workers only write records, the driver only reads.

Identical results need identical records, and a record can depend on the batch it was
computed in: padding and GEMM shapes change the last bits of bf16 arithmetic, which can flip
a token (on the demo, batch size 4 instead of 2 changes 19 of 30 cached generations, 11 of
them in text, and the metrics of two estimators). So phase 1 does not split questions
itself: it cuts each cache fill into exactly the batches a single process would form
(:func:`bench.stores.missing_batches`: missing items by size, then key, in ``batch``-sized
chunks) and deals whole batches to shards, batch ``b`` to shard ``b mod K`` (round-robin, so
every shard gets short and long prompts). A worker computes its batches with the same code
and the same batch composition, hence the same bytes, as the single-process run; the torch
thread count did not change any record in our checks (1 and 2 threads gave identical
metrics).

Fills depend on earlier fills (the answer after "reconsider" needs the greedy answer; ICM's
readout needs its labelled demonstrations), so phase 1 runs in rounds. Each round the driver
replays every unfinished dataset's model work through a :class:`ReplayStore` that returns
cached fills and stops at the first fill with missing items, which becomes that round's
:class:`FillPlan`; workers replay the same way up to that fill, compute their shard of its
batches and stop. Replays of finished fills only read the cache. A record that two datasets
share (the same question in both) is planned by the earlier dataset, as the sequential run
computes it there; a later dataset whose fill is only waiting for such records sits the
round out.

Phase 1 covers the statistics and the augmented answers. Pipelines (their driver interleaves
fills with retrieval and per-question control flow) and relative Mahalanobis's background
embeddings run in phase 2, as in a single-process run. All workers must reach the cache
directory at the same path on a filesystem where SQLite's WAL works, i.e. local disk.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.cache import Record
from bench.config import RunConfig
from bench.report import dumps, write_atomic
from bench.runner import RunResult, RunSetup, model_outputs, prepare, run
from bench.stores import GenerationStore, Prompt, missing_batches

log = logging.getLogger("arbench")

#: Object store of a local cluster: only plans and task summaries travel through Ray.
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20

Batch = list[tuple[str, int]]


@dataclass(frozen=True)
class FillPlan:
    """The first incomplete fill of a dataset's replay and the batches it must compute."""

    dataset: str
    call: int
    kind: str
    desc: str
    digest: str
    batches: list[Batch]


@dataclass(frozen=True)
class FillTask:
    """Shard ``shard`` of a plan: the batches one worker computes."""

    dataset: str
    call: int
    digest: str
    shard: int
    batches: list[Batch]


class _ReplayStop(Exception):
    """Ends a replay at its target fill (carrying the plan when planning)."""

    def __init__(self, plan: FillPlan | None = None) -> None:
        super().__init__("replay stopped")
        self.plan = plan


def _digest(kind: str, keys: Sequence[str], batch: int) -> str:
    return hashlib.sha256(json.dumps([kind, batch, list(keys)]).encode()).hexdigest()


class ReplayStore(GenerationStore):
    """A :class:`GenerationStore` that replays a run's fills up to one target fill.

    Call :meth:`begin` before each replay. Planning (no task): fills that are
    complete return their records; the first incomplete one raises
    :class:`_ReplayStop` with its :class:`FillPlan`, computing nothing. Filling
    (a :class:`FillTask`): the fills before ``task.call`` must be complete; at
    the target the store computes the task's batches and stops. Fills nested
    inside a computing batch behave as in :class:`GenerationStore`.
    """

    def __init__(self, cache, model_key: str, load_backend: Callable, *args, **kwargs) -> None:
        lock = Path(cache.directory) / ".model-load.lock"
        super().__init__(cache, model_key, _exclusive(load_backend, lock), *args, **kwargs)
        self._task: FillTask | None = None
        self._dataset = ""
        self._claimed: Container[str] = frozenset()
        self._calls = 0
        self._nested = False

    def begin(self, dataset: str, task: FillTask | None = None,
              claimed: Container[str] = frozenset()) -> None:
        """Start a replay of ``dataset``: plan (no task) or compute ``task``.

        ``claimed`` keys count as present when planning: an earlier dataset's
        plan of this round computes them.
        """
        self._dataset, self._task, self._claimed, self._calls = dataset, task, claimed, 0

    def _fill(self, kind: str, keys: list[str], sizes: Sequence[int] | Sequence[Prompt],
              compute: Callable[[list[int]], list[Record]], batch: int, desc: str
              ) -> list[Record]:
        if self._nested:
            return super()._fill(kind, keys, sizes, compute, batch, desc)
        call, task = self._calls, self._task
        self._calls += 1
        if task is None or call < task.call:
            found = self.cache.get_many(keys)
            if len(found) == len(set(keys)):
                return [found[k] for k in keys]
            if task is not None:
                raise RuntimeError(f"{desc}: fill #{call} lost records that an earlier round "
                                   f"wrote to {self.cache.path}")
            batches = missing_batches(keys, _Union(found, self._claimed), sizes, batch)
            raise _ReplayStop(FillPlan(self._dataset, call, kind, desc,
                                       _digest(kind, keys, batch), batches))
        if _digest(kind, keys, batch) != task.digest:
            raise RuntimeError(f"{desc}: fill #{call} differs from the driver's plan (the code "
                               "or the data differ between driver and worker)")
        present = self.cache.contains(keys)
        self._nested = True
        try:
            for chunk in task.batches:
                if any(key not in present for key, _ in chunk):
                    self._compute_batch(kind, chunk, compute)
        finally:
            self._nested = False
        raise _ReplayStop()


class _Union:
    """Membership in either of two containers."""

    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self.first, self.second = first, second

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second


def _exclusive(load: Callable, lock: Path) -> Callable:
    """``load`` under an exclusive file lock: a first load converts a GGUF model into the
    cache, which concurrent processes must not do at the same time."""

    def locked():
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                return load()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    return locked


def plan_round(setup: RunSetup, datasets: Sequence[str]) -> tuple[list[FillPlan], list[str]]:
    """Each dataset's next fill, and the datasets whose model work is complete."""
    store = setup.store
    if not isinstance(store, ReplayStore):
        raise TypeError("plan_round needs a setup prepared with store_class=ReplayStore")
    plans: list[FillPlan] = []
    complete: list[str] = []
    claimed: set[str] = set()
    for dataset in datasets:
        store.begin(dataset, claimed=claimed)
        try:
            model_outputs(setup, dataset)
        except _ReplayStop as stop:
            assert stop.plan is not None
            if stop.plan.batches:
                plans.append(stop.plan)
                claimed.update(key for chunk in stop.plan.batches for key, _ in chunk)
        else:
            complete.append(dataset)
    return plans, complete


def shard_plan(plan: FillPlan, shards: int | None, shard_size: int | None, workers: int
               ) -> list[FillTask]:
    """Deal the plan's batches to ``K`` shards round-robin (K ≤ the number of batches)."""
    items = sum(len(chunk) for chunk in plan.batches)
    count = shards or (math.ceil(items / shard_size) if shard_size else workers)
    count = max(1, min(count, len(plan.batches)))
    return [FillTask(plan.dataset, plan.call, plan.digest, s, plan.batches[s::count])
            for s in range(count)]


class FillWorker:
    """A Ray actor: the run's setup built once, then one task (shard of a fill) per call."""

    def __init__(self, config: dict, threads: int) -> None:
        torch.set_num_threads(threads)
        resolved = RunConfig.from_dict(config)
        resolved.progress = False
        self.setup = prepare(resolved, store_class=ReplayStore)

    def fill(self, task: FillTask) -> dict:
        """Compute ``task``'s batches; returns what was done and how long it took."""
        store = self.setup.store
        assert isinstance(store, ReplayStore)
        started, calls = time.perf_counter(), store.lm_calls
        store.begin(task.dataset, task)
        try:
            model_outputs(self.setup, task.dataset)
        except _ReplayStop:
            pass
        else:
            raise RuntimeError(f"{task.dataset}: the replay finished before fill #{task.call}")
        return {"dataset": task.dataset, "call": task.call, "shard": task.shard,
                "items": sum(len(chunk) for chunk in task.batches),
                "lm_generate_calls": store.lm_calls - calls, "pid": os.getpid(),
                "seconds": round(time.perf_counter() - started, 3)}


@dataclass
class PhaseOne:
    """What phase 1 did (written under ``distributed`` in ``run_info.json``)."""

    address: str
    threads_per_worker: int
    workers: int = 0
    rounds: int = 0
    fills: list[dict] = field(default_factory=list)
    tasks: int = 0
    lm_generate_calls: int = 0
    ray_start_seconds: float = 0.0
    seconds: float = 0.0


def check_options(config: RunConfig) -> None:
    """One-line errors for inconsistent Ray options."""
    if not config.ray:
        raise ValueError("--ray-workers, --shards and --shard-size need --ray ADDRESS|local")
    for name in ("ray_workers", "shards", "shard_size"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if config.shards and config.shard_size:
        raise ValueError("give --shards or --shard-size, not both")
    if config.prefix_cache:
        # The backend's prefix memo carries encoded prefixes from batch to batch, so a
        # worker's records would depend on which batches it happened to compute before.
        raise ValueError("--ray and --prefix-cache cannot be combined: the prefix memo makes "
                         "a batch depend on the batches before it")


def fill_cache(config: RunConfig) -> PhaseOne:
    """Phase 1: fill the cache with the run's model outputs on Ray (see module docstring)."""
    check_options(config)
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise ValueError("--ray needs the 'ray' extra: pip install 'arbench[ray]'") from exc
    assert config.ray is not None
    started = time.perf_counter()
    planner = prepare(RunConfig.from_dict({**config.to_dict(), "progress": False}),
                      store_class=ReplayStore)
    info = PhaseOne(config.ray, threads_per_worker=config.threads or 1)
    pool, joined = None, False
    try:
        pending = list(planner.datasets)
        while True:
            plans, complete = plan_round(planner, pending)
            pending = [d for d in pending if d not in complete]
            if not plans:
                if pending:
                    raise RuntimeError(f"phase 1 cannot advance datasets {pending}")
                break
            if pool is None:  # a run whose outputs are all cached never starts Ray
                ray_started, joined = time.perf_counter(), True
                info.workers = _start_ray(ray, config, info.threads_per_worker)
                actor = ray.remote(num_cpus=info.threads_per_worker)(FillWorker)
                pool = ActorPool([actor.remote(config.to_dict(), info.threads_per_worker)
                                  for _ in range(info.workers)])
                info.ray_start_seconds = round(time.perf_counter() - ray_started, 2)
            tasks = [task for plan in plans
                     for task in shard_plan(plan, config.shards, config.shard_size,
                                            info.workers)]
            info.rounds += 1
            log.info("ray round %d: %s", info.rounds, ", ".join(
                f"{p.desc} ({sum(map(len, p.batches))} items)" for p in plans))
            done = list(pool.map_unordered(lambda a, t: a.fill.remote(t), tasks))
            info.tasks += len(done)
            info.lm_generate_calls += sum(d["lm_generate_calls"] for d in done)
            info.fills += [{"round": info.rounds, "fill": p.desc, "kind": p.kind,
                            "items": sum(map(len, p.batches)), "batches": len(p.batches),
                            "shards": sum(d["dataset"] == p.dataset for d in done),
                            "max_shard_seconds": max(d["seconds"] for d in done
                                                     if d["dataset"] == p.dataset)}
                           for p in plans]
    finally:
        if joined:
            ray.shutdown()
        planner.cache.close()
    info.seconds = round(time.perf_counter() - started, 2)
    return info


def _start_ray(ray, config: RunConfig, threads: int) -> int:
    """Start or join the cluster; returns the number of workers to use."""
    if config.ray == "local":
        workers = config.ray_workers or os.cpu_count() or 1
        ray.init(num_cpus=workers * threads, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, log_to_driver=False)
        return workers
    ray.init(address=config.ray, log_to_driver=False)
    return config.ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)


def run_distributed(config: RunConfig) -> RunResult:
    """``arbench run --ray``: phase 1 on Ray, then :func:`bench.runner.run` from the cache."""
    started = time.perf_counter()
    phase_one = fill_cache(config)
    result = run(config)
    result.run_info["phase2_seconds"] = result.run_info["wall_seconds"]
    result.run_info["wall_seconds"] = round(time.perf_counter() - started, 2)
    result.run_info["distributed"] = vars(phase_one)
    write_atomic(result.directory / "run_info.json", dumps(result.run_info))
    return result
