"""Drive a pipeline coroutine by hand: a responder function answers each request.

Pipeline control-flow tests script the model and the retriever per request
and assert the exact sequence of requests and the final outcome.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bench.data.schema import Question
from bench.models.hf_backend import GreedyConfig
from bench.models.outputs import Generation, SampleSet
from bench.pipelines.base import Outcome, PipelineContext
from bench.prompts import SHORT_ANSWER
from retrievers.base import Passage


def context(top_k: int = 5, seed: int = 0) -> PipelineContext:
    return PipelineContext(template=SHORT_ANSWER, greedy=GreedyConfig(), top_k=top_k, seed=seed)


def question(text: str, answers: Sequence[str] = ("x",), qid: str = "q1") -> Question:
    return Question(id=qid, question=text, answers=tuple(answers), dataset="demo",
                    split="test")


def script(pipeline, q: Question, respond: Callable) -> tuple[Outcome, list]:
    """Run ``pipeline`` on ``q``; ``respond(request)`` gives each result.

    Returns the outcome and every request in the order it was made (the
    members of a yielded list in list order).
    """
    run = pipeline.run(q)
    log: list = []
    reply = None
    first = True
    while True:
        try:
            request = next(run) if first else run.send(reply)
        except StopIteration as stop:
            return stop.value, log
        first = False
        if isinstance(request, list):
            log.extend(request)
            reply = [respond(r) for r in request]
        else:
            log.append(request)
            reply = respond(request)


def generation(text: str, probs: Sequence[float] | None = None,
               tokens: Sequence[str] | None = None, entropies: Sequence[float] | None = None,
               hidden: np.ndarray | None = None, stop_reason: str = "newline") -> Generation:
    """A Generation with chosen per-token probabilities, token texts and entropies.

    ``tokens`` default to the words of ``text`` (each after the first with a
    leading space), plus a final stop token ``"\\n"`` when the generation
    stopped at a newline or EOS; ``probs``/``entropies`` cover every token.
    ``hidden`` is the (L, d) ``hidden_mean`` (default zeros (2, 4)).
    """
    if tokens is None:
        words = text.split(" ")
        tokens = [words[0]] + [" " + w for w in words[1:]] if text else []
        if stop_reason != "length":
            tokens = [*tokens, "\n"]
    n = len(tokens)
    probs = np.full(n, 0.9) if probs is None else np.asarray(probs, dtype=np.float64)
    entropies = np.zeros(n) if entropies is None else np.asarray(entropies, dtype=np.float64)
    if len(probs) != n or len(entropies) != n:
        raise ValueError(f"{n} tokens but {len(probs)} probs / {len(entropies)} entropies")
    hidden = np.zeros((2, 4), np.float32) if hidden is None else np.asarray(hidden, np.float32)
    logp = np.log(probs).astype(np.float32)
    return Generation(
        text=text, token_ids=np.arange(n), token_logprobs=logp,
        entropies=entropies.astype(np.float32), mean_logprobs=np.full(n, -5, np.float32),
        logsumexp=np.zeros(n, np.float32), topk_ids=np.zeros((n, 1), np.int64),
        topk_logprobs=logp[:, None], sampling_logprobs=logp,
        root_mass_t2=np.zeros(n, np.float32), hidden_mean=hidden, hidden_last=hidden,
        prompt_hidden_mean=hidden, prompt_hidden_last=hidden,
        layers=np.arange(1, hidden.shape[0] + 1), token_texts=tuple(tokens),
        stop_reason=stop_reason, prompt_tokens=5, vocab_size=16)


def sample_set(gens: Sequence[Generation]) -> SampleSet:
    return SampleSet(tuple(gens), 1.0, 50)


def passage(pid: str, text: str, title: str | None = None) -> Passage:
    return Passage(pid, title or pid, text)


def last_user(messages) -> str:
    """Content of the last user turn of a chat."""
    return [c for role, c in messages if role == "user"][-1]
