"""Question files on disk: the validated JSON-lines loader and ``LocalDirSource``.

A data directory is laid out like the shared evaluation data::

    <root>/<dataset>/test.jsonl
    <root>/<dataset>/train.jsonl          (optional)
    <root>/corpus/wiki_passages.jsonl

Every malformed row raises :class:`~bench.data.schema.DataError` with a one-line
message ``<file>:<line>: field '<name>': <why>``.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.data.schema import SPLITS, STUDY_DATASETS, DataError, DataSource, Question
from retrievers.base import Corpus, load_corpus_jsonl, read_jsonl_rows

#: Corpus file inside a data directory.
CORPUS_RELPATH = Path("corpus") / "wiki_passages.jsonl"

#: Row keys that become ``Question`` attributes; every other key goes to ``meta``.
_CORE_FIELDS = ("id", "question", "answers")


# --------------------------------------------------------------------------- #
# Field validators shared with the AdaRAGUE converter (bench.data.hub).
# ``where`` is the message prefix, e.g. ``"nq/test.jsonl:17"``.
# --------------------------------------------------------------------------- #
def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_text(row: Any, key: str, where: str, field: str | None = None) -> str:
    """Return ``row[key]`` if it is a non-blank string, else raise ``DataError``.

    Parameters
    ----------
    row : mapping
        The parsed row.
    key : str
        Key to read.
    where : str
        Message prefix naming the file/origin and line/row.
    field : str, optional
        Field name shown in the message (defaults to ``key``).

    Returns
    -------
    str
        The value, unchanged (not stripped).
    """
    field = field or key
    if key not in row:
        raise DataError(f"{where}: field '{field}': missing")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{field}': expected a string, got {_type_name(value)}")
    if not value.strip():
        raise DataError(f"{where}: field '{field}': empty")
    return value


def check_answers(value: Any, where: str, field: str = "answers") -> tuple[str, ...]:
    """Validate a gold-answer list: a non-empty list of non-blank strings.

    Parameters
    ----------
    value : object
        The parsed value (a list or tuple is accepted).
    where : str
        Message prefix naming the file/origin and line/row.
    field : str
        Field name shown in the message.

    Returns
    -------
    tuple of str
        The answers, unchanged and in order.
    """
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field '{field}': expected a list, got {_type_name(value)}")
    if not value:
        raise DataError(f"{where}: field '{field}': empty list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(f"{where}: field '{field}': item {i} is {_type_name(item)}, "
                            "expected a string")
        if not item.strip():
            raise DataError(f"{where}: field '{field}': item {i} is an empty string")
    return tuple(value)


def check_unique_id(qid: str, position: int, seen: dict[str, int], where: str,
                    unit: str = "line", field: str = "id") -> None:
    """Raise ``DataError`` if ``qid`` was seen before; otherwise record it.

    Parameters
    ----------
    qid : str
        The id of the current row.
    position : int
        Line or row number of the current row.
    seen : dict
        ``id -> first position``; updated in place.
    where : str
        Message prefix naming the file/origin and line/row.
    unit : str
        ``"line"`` or ``"row"``, used in the message.
    field : str
        Field name shown in the message.
    """
    if qid in seen:
        raise DataError(f"{where}: field '{field}': duplicate id {qid!r} "
                        f"(first on {unit} {seen[qid]})")
    seen[qid] = position


def order_dataset_names(names: Iterable[str]) -> list[str]:
    """Study datasets first (in ``STUDY_DATASETS`` order), then the rest alphabetically."""
    names = set(names)
    study = [n for n in STUDY_DATASETS if n in names]
    return study + sorted(names - set(study))


def check_split(split: str) -> None:
    """Raise ``DataError`` unless ``split`` is one of ``SPLITS``."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- #
# JSON-lines questions
# --------------------------------------------------------------------------- #
def load_questions_jsonl(path: str | Path, dataset: str, split: str) -> list[Question]:
    """Read and validate one question file.

    Each non-blank line is a JSON object with a non-empty string ``id`` (unique
    in the file), a non-blank string ``question`` (kept byte-for-byte, not
    stripped) and ``answers``, a non-empty list of non-blank strings. All other
    keys go into ``Question.meta``.

    Parameters
    ----------
    path : str or Path
        The ``.jsonl`` file.
    dataset, split : str
        Recorded on every ``Question``.

    Returns
    -------
    list of Question
        In file order.

    Raises
    ------
    DataError
        One line, ``<path>:<line>: field '<name>': <why>`` (or
        ``<path>:<line>: bad JSON: <msg>``), for the first bad row; also if the
        file cannot be read, is not UTF-8 or holds no question.
    """
    path = Path(path)
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl_rows(path, DataError)[1]:
        where = f"{path}:{lineno}"
        qid = check_text(obj, "id", where)
        question = check_text(obj, "question", where)
        if "answers" not in obj:
            raise DataError(f"{where}: field 'answers': missing")
        answers = check_answers(obj["answers"], where)
        check_unique_id(qid, lineno, seen, where)
        meta = {k: v for k, v in obj.items() if k not in _CORE_FIELDS}
        questions.append(Question(qid, question, answers, dataset, split, meta))
    if not questions:
        raise DataError(f"{path}: no questions")
    return questions


class LocalDirSource(DataSource):
    """Questions and corpus from a directory laid out like the shared data.

    Parameters
    ----------
    path : str or Path
        Root directory holding ``<dataset>/test.jsonl`` (and ``train.jsonl``)
        and ``corpus/wiki_passages.jsonl``.
    corpus_path : str or Path, optional
        A corpus file to use instead of ``<path>/corpus/wiki_passages.jsonl``.
    description : str, optional
        Recorded in the resolved config; defaults to ``"local:<path>"``.

    Raises
    ------
    DataError
        If ``path`` is not a directory.
    """

    def __init__(self, path: str | Path, corpus_path: str | Path | None = None,
                 description: str | None = None) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data directory not found")
        self.corpus_path = Path(corpus_path) if corpus_path is not None \
            else self.root / CORPUS_RELPATH
        self.description = description or f"local:{self.root}"
        self._questions: dict[tuple[str, str], list[Question]] = {}
        self._corpus: Corpus | None = None

    def dataset_names(self) -> list[str]:
        """Sub-folders holding a ``test.jsonl``: study datasets first, then alphabetical."""
        found = [p.name for p in self.root.iterdir()
                 if p.is_dir() and (p / "test.jsonl").is_file()]
        return order_dataset_names(found)

    def questions(self, dataset: str, split: str) -> list[Question]:
        """Validated rows of ``<root>/<dataset>/<split>.jsonl`` (cached).

        Raises
        ------
        DataError
            For an unknown split, an unknown dataset or a missing split file
            (naming the directory and the datasets available), or a bad row.
        """
        check_split(split)
        key = (dataset, split)
        if key not in self._questions:
            path = self.root / dataset / f"{split}.jsonl"
            if not path.is_file():
                available = ", ".join(self.dataset_names()) or "none"
                what = "unknown dataset" if not (self.root / dataset).is_dir() \
                    else f"no {split}.jsonl for dataset"
                raise DataError(f"{self.root}: {what} {dataset!r}; "
                                f"datasets available: {available}")
            self._questions[key] = load_questions_jsonl(path, dataset, split)
        return self._questions[key]

    def corpus(self) -> Corpus:
        """The passages of the corpus file, loaded once.

        Raises
        ------
        DataError
            If the corpus file does not exist.
        retrievers.base.CorpusError
            If a corpus row is malformed (raised by ``load_corpus_jsonl``).
        """
        if self._corpus is None:
            if not self.corpus_path.is_file():
                raise DataError(f"{self.corpus_path}: corpus file not found")
            self._corpus = load_corpus_jsonl(self.corpus_path)
        return self._corpus
