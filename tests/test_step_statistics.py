"""Scoring only unfinished rows gives each row the bits of scoring the whole batch."""
from __future__ import annotations

import pytest
import torch

from bench.models.hf_backend import (
    GreedyConfig,
    SamplingConfig,
    _rows_to_score,
    _spread,
    _step_statistics,
)

VOCAB = 49_152  # the default model's: long enough rows for ATen's parallel reductions


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_rows_to_score_tops_up_to_the_thread_count(two_threads):
    assert _rows_to_score(torch.tensor([True, True, True])) is None  # all unfinished
    assert _rows_to_score(torch.tensor([False, True])) is None  # no more rows than threads
    assert _rows_to_score(torch.tensor([False, True, False, True])).tolist() == [1, 3]
    # One unfinished row alone would be reduced across threads: a finished row joins it.
    assert _rows_to_score(torch.tensor([False, False, True, False])).tolist() == [0, 2]


@pytest.mark.parametrize("active", [[0, 0, 1, 0, 0, 0], [1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 1, 1]])
@pytest.mark.parametrize("sampling", [False, True])
def test_subset_statistics_equal_the_full_batch_bits(two_threads, active, sampling):
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(6, VOCAB, generator=generator) * 4).to(torch.bfloat16).float()
    config = SamplingConfig() if sampling else GreedyConfig()

    def generators():
        return [torch.Generator().manual_seed(100 + r) for r in range(6)] if sampling else None

    full = _step_statistics(logits, config, generators())
    active_rows = torch.tensor(active, dtype=torch.bool)
    live = _rows_to_score(active_rows)
    assert live is not None
    every = generators()
    subset = _step_statistics(logits[live], config,
                              None if every is None else [every[i] for i in live.tolist()])
    for name, value in subset.items():
        spread = _spread(value, live, 6)
        for row in torch.nonzero(active_rows)[:, 0].tolist():
            assert torch.equal(spread[row], full[name][row]), (name, row)
