"""Question sets and corpora: local JSON-lines folders, the demo set, the study's tables.

:func:`resolve_source` picks the source the command line asks for.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.data.hub import (
    HUB_DATASETS,
    HUB_PREFIX,
    AdaRagueCsvSource,
    HubSource,
    convert_adarague_rows,
    hub_id,
    passage_id,
    read_adarague_csv,
)
from bench.data.local import LocalDirSource, load_questions_jsonl
from bench.data.schema import SPLITS, STUDY_DATASETS, DataError, DataSource, Question

#: The built-in demo data set (``demo/{test,train}.jsonl`` and ``corpus/wiki_passages.jsonl``).
DEMO_DIR = Path(__file__).parent / "demo"

#: Environment variable read when no data directory is given.
DATA_ENV_VAR = "ARBENCH_DATA"


def resolve_source(data_dir: str | None, hub: bool = False,
                   corpus: str | None = None) -> DataSource:
    """Choose the data source.

    Precedence: ``hub`` -> :class:`HubSource`; else ``data_dir``, or the
    environment variable ``ARBENCH_DATA`` when ``data_dir`` is ``None`` (an
    empty value counts as unset) -> :class:`LocalDirSource`, where the literal
    value ``"demo"`` means the built-in demo set; else the demo set.

    Parameters
    ----------
    data_dir : str or None
        A directory laid out like the shared data, or ``"demo"``.
    hub : bool
        Load the study's tables from the Hugging Face Hub.
    corpus : str, optional
        A JSON-lines corpus file that replaces the source's own corpus.

    Returns
    -------
    DataSource

    Raises
    ------
    DataError
        If the chosen directory does not exist.
    """
    if hub:
        return HubSource(corpus_path=corpus)
    chosen = data_dir if data_dir is not None else (os.environ.get(DATA_ENV_VAR) or None)
    if chosen is None or chosen == "demo":
        return LocalDirSource(DEMO_DIR, corpus_path=corpus, description="demo")
    return LocalDirSource(chosen, corpus_path=corpus)


__all__ = [
    "DATA_ENV_VAR",
    "DEMO_DIR",
    "HUB_DATASETS",
    "HUB_PREFIX",
    "SPLITS",
    "STUDY_DATASETS",
    "AdaRagueCsvSource",
    "DataError",
    "DataSource",
    "HubSource",
    "LocalDirSource",
    "Question",
    "convert_adarague_rows",
    "hub_id",
    "load_questions_jsonl",
    "passage_id",
    "read_adarague_csv",
    "resolve_source",
]
