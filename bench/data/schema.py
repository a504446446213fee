"""Typed question rows and the data-source interface."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from retrievers.base import Corpus

SPLITS = ("test", "train")

# Folder names of the six study datasets, in the study's table order.
STUDY_DATASETS = ("nq", "squad", "triviaqa", "2wikimultihopqa", "hotpotqa", "musique")


class DataError(ValueError):
    """Malformed input data; the message is one line: ``file:line: field 'x': why``."""


@dataclass(frozen=True)
class Question:
    """One QA item.

    Attributes
    ----------
    id : str
        Unique within its dataset and split.
    question : str
        Kept byte-for-byte as in the source.
    answers : tuple of str
        Gold aliases; a prediction is correct if it matches any of them.
    dataset, split : str
        Where the row came from (``split`` is ``"test"`` or ``"train"``).
    meta : dict
        Source-specific extras (level, type, gold passage ids, ...); not
        used by scoring.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    dataset: str
    split: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class DataSource(ABC):
    """Where questions and the retrieval corpus come from."""

    #: Short description recorded in the resolved config.
    description: str

    @abstractmethod
    def dataset_names(self) -> list[str]:
        """Datasets this source offers, in a stable order."""

    @abstractmethod
    def questions(self, dataset: str, split: str) -> list[Question]:
        """All rows of one dataset split, validated, in file order."""

    @abstractmethod
    def corpus(self) -> Corpus:
        """The passage collection retrievers index for this source."""

    def fingerprint(self, dataset: str, split: str) -> str:
        """Content hash of one split (recorded with results)."""
        import hashlib
        import json

        digest = hashlib.sha256()
        for q in self.questions(dataset, split):
            digest.update(json.dumps([q.id, q.question, list(q.answers)]).encode())
        return digest.hexdigest()
