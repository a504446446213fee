"""Corpus loading and the retriever interface shared by every backend."""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


class CorpusError(ValueError):
    """A corpus row is malformed; the message names file, line and field."""


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text."""

    id: str
    title: str
    text: str

    def render(self) -> str:
        """Text shown to the reader model: title line, then body."""
        return f"Wikipedia Title: {self.title}\n{self.text}"


@dataclass(frozen=True)
class Hit:
    """A ranked search result."""

    passage_id: str
    score: float


@dataclass(frozen=True)
class Corpus:
    """An ordered passage collection with a content fingerprint.

    Attributes
    ----------
    passages : tuple of Passage
        Rows in file order; ``passages[i]`` is document ``i`` of every index.
    sha256 : str
        Hash of the source bytes; part of every index and cache key.
    source : str
        Where the rows came from (a path or ``"demo"``).
    """

    passages: tuple[Passage, ...]
    sha256: str
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {p.id: p for p in self.passages})

    def __len__(self) -> int:
        return len(self.passages)

    def get(self, passage_id: str) -> Passage:
        return self._by_id[passage_id]  # type: ignore[attr-defined]

    def slice(self, n: int) -> Corpus:
        """The first ``n`` passages, fingerprinted as a distinct corpus."""
        sub = self.passages[:n]
        return Corpus(sub, hashlib.sha256(f"{self.sha256}[:{n}]".encode()).hexdigest(),
                      f"{self.source}[:{n}]")

    @classmethod
    def from_rows(cls, rows: Sequence[Passage], source: str) -> Corpus:
        digest = hashlib.sha256()
        for p in rows:
            digest.update(json.dumps([p.id, p.title, p.text]).encode())
        return cls(tuple(rows), digest.hexdigest(), source)


def read_jsonl_rows(path: str | Path, error: type[Exception]
                    ) -> tuple[bytes, list[tuple[int, dict]]]:
    """Raw bytes and ``(line number, object)`` of every non-blank line of a JSONL file.

    Lines are split on ``\n`` only (``str.splitlines`` would also break inside
    JSON strings holding raw U+2028/U+0085); a leading BOM is tolerated.

    Raises
    ------
    error
        One line naming the file (and line): unreadable file, not UTF-8, bad
        JSON, or a row that is not a JSON object.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8: {exc.reason} at byte {exc.start}") from None
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{lineno}: bad JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise error(f"{path}:{lineno}: row: expected a JSON object, "
                        f"got {type(obj).__name__}")
        rows.append((lineno, obj))
    return raw, rows


def load_corpus_jsonl(path: str | Path) -> Corpus:
    """Read ``{"id", "title", "text"}`` rows, validating each one.

    Raises
    ------
    CorpusError
        On bad JSON, a missing or empty ``id``/``text``, a non-string
        ``title``, or a duplicate id; the message is ``file:line: field: why``.
    """
    path = Path(path)
    raw, objects = read_jsonl_rows(path, CorpusError)
    rows: list[Passage] = []
    seen: dict[str, int] = {}
    for lineno, obj in objects:
        for field in ("id", "text"):
            value = obj.get(field)
            if not isinstance(value, str) or not value.strip():
                raise CorpusError(f"{path}:{lineno}: field '{field}': missing or empty")
        title = obj.get("title", "")
        if not isinstance(title, str):
            raise CorpusError(f"{path}:{lineno}: field 'title': expected a string")
        if obj["id"] in seen:
            raise CorpusError(f"{path}:{lineno}: field 'id': duplicate id {obj['id']!r} "
                              f"(first on line {seen[obj['id']]})")
        seen[obj["id"]] = lineno
        rows.append(Passage(obj["id"], title, obj["text"]))
    if not rows:
        raise CorpusError(f"{path}: no passages")
    return Corpus(tuple(rows), hashlib.sha256(raw).hexdigest(), str(path))


class Retriever(ABC):
    """Ranks the passages of one corpus for free-text queries.

    Implementations build their index once, save it under ``index_dir`` and
    reload it on later runs when the fingerprint matches.
    """

    name: ClassVar[str]

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus

    @abstractmethod
    def fingerprint(self) -> str:
        """Stable id of (method, parameters, corpus); used in cache keys."""

    @abstractmethod
    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first; ties broken by corpus order."""


RetrieverFactory = Callable[..., Retriever]
RETRIEVERS: dict[str, RetrieverFactory] = {}


def register_retriever(name: str) -> Callable[[RetrieverFactory], RetrieverFactory]:
    """Class decorator adding a retriever under ``name`` (used by ``--retriever``)."""

    def wrap(factory: RetrieverFactory) -> RetrieverFactory:
        if name in RETRIEVERS:
            raise ValueError(f"retriever {name!r} registered twice")
        RETRIEVERS[name] = factory
        return factory

    return wrap


def build_retriever(name: str, corpus: Corpus, index_dir: str | Path, **options) -> Retriever:
    """Instantiate a registered retriever, loading or building its saved index."""
    try:
        factory = RETRIEVERS[name]
    except KeyError:
        raise KeyError(f"unknown retriever {name!r}; known: {sorted(RETRIEVERS)}") from None
    return factory(corpus=corpus, index_dir=Path(index_dir), **options)
