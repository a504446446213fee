"""The study's own tables (AdaRAGUE): Hugging Face Hub datasets and CSV copies.

AdaRAGUE publishes each dataset as ``VityaVitalich/adaptive_rag_<name>`` on the Hub
and as ``data/adaptive_rag_<dataset>/{train,test}.csv`` in its repository, one row
per question: ``qid`` (``question_id`` on the Hub), ``question_text`` (kept
byte-for-byte), ``reference`` (gold answers: a Python-literal list of strings, or
already a list), ``context`` (``contexts`` on the Hub: dicts with ``idx``,
``is_supporting``, ``paragraph_text`` and usually ``title``; the CSV files hold the
``str()`` of a NumPy object array, i.e. a list literal whose elements are separated
by newlines instead of commas; both forms are accepted), optional ``level``/``type``,
and ``no_retrieve``/``rag_one_retrieve`` (model answers, kept in ``Question.meta``).

Literals are parsed with :func:`ast.literal_eval`, never ``eval``. Context paragraphs
become :class:`~retrievers.base.Passage` objects with the shared corpus id rule
``"wiki-" + sha1(title + "\\t" + text)[:16]``.
"""
from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.data.local import (
    check_answers,
    check_split,
    check_text,
    check_unique_id,
    order_dataset_names,
)
from bench.data.schema import SPLITS, DataError, DataSource, Question
from retrievers.base import Corpus, Passage, load_corpus_jsonl

#: Hub repository prefix of the study's tables.
HUB_PREFIX = "VityaVitalich/adaptive_rag_"

#: Hub dataset name (after :data:`HUB_PREFIX`) -> arbench dataset name.
HUB_DATASETS: dict[str, str] = {
    "natural_questions": "nq", "trivia_qa": "triviaqa", "squad": "squad",
    "2wikimultihopqa": "2wikimultihopqa", "hotpotqa": "hotpotqa", "musique": "musique",
}

#: arbench split name -> Hub split name.
HUB_SPLITS: dict[str, str] = {"test": "test", "train": "train"}

#: Columns copied into ``Question.meta`` when present.
META_COLUMNS = ("level", "type", "no_retrieve", "rag_one_retrieve")

_ID_COLUMNS = ("qid", "question_id")
_CONTEXT_COLUMNS = ("context", "contexts")


def hub_id(dataset: str) -> str:
    """The Hub id of an arbench dataset, e.g. ``"VityaVitalich/adaptive_rag_trivia_qa"``."""
    for hub_name, name in HUB_DATASETS.items():
        if name == dataset:
            return HUB_PREFIX + hub_name
    raise DataError(f"no Hub table for dataset {dataset!r}; "
                    f"known: {', '.join(HUB_DATASETS.values())}")


def passage_id(title: str, text: str) -> str:
    """The shared corpus id: ``"wiki-" + sha1(title + "\\t" + text)[:16]``."""
    return "wiki-" + hashlib.sha1(f"{title}\t{text}".encode()).hexdigest()[:16]


_SKIP_TOKENS = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                tokenize.DEDENT, tokenize.ENDMARKER}


def _add_missing_commas(text: str) -> str:
    """Insert the commas NumPy's ``str(array)`` leaves out between list elements.

    ``"[{'a': 1}\\n {'a': 2}]"`` becomes ``"[{'a': 1}, {'a': 2}]"`` and
    ``"['x' 'y']"`` becomes ``"['x', 'y']"`` (instead of Python's implicit string
    concatenation). Only the outermost list is touched; text that does not
    tokenize is returned unchanged (``literal_eval`` then reports the error).
    """
    if not text.startswith("["):
        return text
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    inserts: list[int] = []
    depth = 0
    ends_element = False  # the previous token closed an element of the outer list
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in _SKIP_TOKENS:
                continue
            is_op = tok.type == tokenize.OP
            if depth == 1 and ends_element and not (is_op and tok.string in ",]"):
                inserts.append(line_starts[tok.start[0] - 1] + tok.start[1])
            if is_op and tok.string in "([{":
                depth += 1
                ends_element = False
            elif is_op and tok.string in ")]}":
                depth -= 1
                ends_element = depth == 1
            else:
                ends_element = depth == 1 and tok.type in (tokenize.STRING, tokenize.NUMBER,
                                                           tokenize.NAME)
    except (tokenize.TokenError, SyntaxError):
        return text
    for pos in reversed(inserts):
        text = text[:pos] + ", " + text[pos:]
    return text


def parse_literal(value: Any, where: str, field: str) -> Any:
    """Parse a string cell with ``ast.literal_eval`` (NumPy ``str()`` lists accepted).

    Arrays become lists via ``tolist()``; other values pass through. Raises
    ``DataError`` (``<where>: field '<field>': not a Python literal (<why>)``).
    """
    if hasattr(value, "tolist") and not isinstance(value, str):
        return value.tolist()
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        raise DataError(f"{where}: field '{field}': empty")
    try:
        return ast.literal_eval(_add_missing_commas(text))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        why = getattr(exc, "msg", None) or _one_line(exc)
        raise DataError(f"{where}: field '{field}': not a Python literal ({why})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pick_column(row: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in row), None)


def _context_passages(value: Any, where: str, field: str) -> list[tuple[Passage, bool]]:
    """Validate a context cell; return ``(passage, is_supporting)`` in cell order."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    items = parse_literal(value, where, field)
    if not isinstance(items, (list, tuple)):
        raise DataError(f"{where}: field '{field}': expected a list, got {type(items).__name__}")
    out: list[tuple[Passage, bool]] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DataError(f"{where}: field '{field}': item {i} is {type(item).__name__}, "
                            "expected a dict")
        text = item.get("paragraph_text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field '{field}': item {i}: 'paragraph_text' "
                            "missing or empty")
        title = "" if item.get("title") is None else item["title"]
        if not isinstance(title, str):
            raise DataError(f"{where}: field '{field}': item {i}: 'title' is "
                            f"{type(title).__name__}, expected a string")
        supporting = item.get("is_supporting")  # None (absent in an Arrow struct) = False
        supporting = False if supporting is None else supporting
        if isinstance(supporting, str) or supporting not in (0, 1):
            raise DataError(f"{where}: field '{field}': item {i}: 'is_supporting' must be "
                            f"a boolean, got {supporting!r}")
        out.append((Passage(passage_id(title, text), title, text), bool(supporting)))
    return out


def convert_adarague_rows(rows: Iterable[Mapping[str, Any]], dataset: str, split: str,
                          origin: str) -> tuple[list[Question], list[Passage]]:
    """Convert AdaRAGUE rows (Hub or CSV) into questions and context passages.

    Parameters
    ----------
    rows : iterable of mapping
        One mapping per question (a ``datasets.Dataset``, CSV records, ...).
    dataset, split : str
        Recorded on every ``Question``.
    origin : str
        Names the source in error messages (a path or a Hub id).

    Returns
    -------
    questions : list of Question
        In row order. ``meta`` holds ``level``/``type``/``no_retrieve``/
        ``rag_one_retrieve`` when present, ``gold_passage_ids`` (supporting
        paragraphs), ``context_passage_ids`` (all paragraphs, in order) and
        ``origin``.
    passages : list of Passage
        Every context paragraph, de-duplicated on id, in first-seen order.

    Raises
    ------
    DataError
        ``<origin>:row <n>: field '<name>': <why>`` (rows counted from 1,
        header excluded) for the first bad row.
    """
    questions: list[Question] = []
    passages: dict[str, Passage] = {}
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, start=1):
        where = f"{origin}:row {n}"
        if not isinstance(row, Mapping):
            raise DataError(f"{where}: row: expected a mapping, got {type(row).__name__}")
        id_col = _pick_column(row, _ID_COLUMNS) or _ID_COLUMNS[0]
        qid = check_text(row, id_col, where)
        question = check_text(row, "question_text", where)
        if "reference" not in row:
            raise DataError(f"{where}: field 'reference': missing")
        answers = check_answers(parse_literal(row["reference"], where, "reference"), where,
                                "reference")
        ctx_col = _pick_column(row, _CONTEXT_COLUMNS)
        context = _context_passages(row[ctx_col], where, ctx_col) if ctx_col else []
        check_unique_id(qid, n, seen, where, unit="row", field=id_col)
        meta: dict[str, Any] = {k: row[k] for k in META_COLUMNS if k in row}
        meta["gold_passage_ids"] = list(dict.fromkeys(p.id for p, gold in context if gold))
        meta["context_passage_ids"] = list(dict.fromkeys(p.id for p, _ in context))
        meta["origin"] = origin
        for p, _ in context:
            passages.setdefault(p.id, p)
        questions.append(Question(qid, question, answers, dataset, split, meta))
    if not questions:
        raise DataError(f"{origin}: no rows")
    return questions, list(passages.values())


def read_adarague_csv(path: str | Path, dataset: str,
                      split: str) -> tuple[list[Question], list[Passage]]:
    """Read one AdaRAGUE CSV file (``data/adaptive_rag_<dataset>/<split>.csv``).

    Cells are read as strings with ``keep_default_na=False``, so answers that are
    the literal string ``"None"`` stay strings. Returns what
    :func:`convert_adarague_rows` returns; raises ``DataError`` if pandas is
    missing, the file cannot be read or parsed, or a row is bad.
    """
    try:
        import pandas as pd
    except ImportError:
        raise DataError("reading AdaRAGUE CSV files needs pandas: "
                        "pip install 'arbench[hub]'") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype=str, encoding="utf-8")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot parse CSV: {_one_line(exc)}") from None
    return convert_adarague_rows(frame.to_dict("records"), dataset, split, str(path))


class _AdaRagueSource(DataSource):
    """Shared caching and corpus logic of the Hub and CSV sources."""

    #: Names the source in "unknown dataset" messages.
    label: str

    def __init__(self, corpus_path: str | Path | None) -> None:
        self.corpus_path = Path(corpus_path) if corpus_path is not None else None
        self._tables: dict[tuple[str, str], tuple[list[Question], list[Passage]]] = {}
        self._corpus: Corpus | None = None

    def _splits(self, dataset: str) -> list[str]:
        """Splits available for ``dataset``."""
        return list(SPLITS)

    @abstractmethod
    def _load(self, dataset: str, split: str) -> tuple[list[Question], list[Passage]]:
        """Read and convert one table."""

    def _table(self, dataset: str, split: str) -> tuple[list[Question], list[Passage]]:
        check_split(split)
        key = (dataset, split)
        if key not in self._tables:
            names = self.dataset_names()
            if dataset not in names or split not in self._splits(dataset):
                what = "unknown dataset" if dataset not in names else f"no {split} split for"
                raise DataError(f"{self.label}: {what} {dataset!r}; "
                                f"datasets available: {', '.join(names) or 'none'}")
            self._tables[key] = self._load(dataset, split)
        return self._tables[key]

    def questions(self, dataset: str, split: str) -> list[Question]:
        """Validated rows of one dataset split, in table order (cached)."""
        return self._table(dataset, split)[0]

    def passages(self, dataset: str, split: str) -> list[Passage]:
        """De-duplicated context paragraphs of one dataset split."""
        return self._table(dataset, split)[1]

    def corpus(self) -> Corpus:
        """The retrieval corpus (loaded once).

        With ``corpus_path`` it is that JSON-lines file. Otherwise it is the
        union of the context paragraphs of *every* split of *every* dataset this
        source offers (``dataset_names()`` order, then ``SPLITS`` order, first
        occurrence wins), so it does not depend on which questions were loaded
        first; every table is loaded for it. Raises ``DataError`` if
        ``corpus_path`` does not exist or the tables hold no paragraph.
        """
        if self._corpus is not None:
            return self._corpus
        if self.corpus_path is not None:
            if not self.corpus_path.is_file():
                raise DataError(f"{self.corpus_path}: corpus file not found")
            self._corpus = load_corpus_jsonl(self.corpus_path)
            return self._corpus
        union: dict[str, Passage] = {}
        for dataset in self.dataset_names():
            for split in self._splits(dataset):
                for p in self.passages(dataset, split):
                    union.setdefault(p.id, p)
        if not union:
            raise DataError(f"{self.label}: the tables hold no context paragraphs; "
                            "pass a corpus file")
        self._corpus = Corpus.from_rows(list(union.values()), f"{self.description}:contexts")
        return self._corpus


class HubSource(_AdaRagueSource):
    """The study's tables from the Hugging Face Hub (``VityaVitalich/adaptive_rag_*``).

    Needs the optional ``datasets`` package (``pip install 'arbench[hub]'``),
    imported only when a table is loaded.

    Parameters
    ----------
    corpus_path : str or Path, optional
        A JSON-lines corpus to retrieve from. If omitted, :meth:`corpus` is the
        union of the context paragraphs of all tables of ``datasets`` (both
        splits), which downloads all of them.
    datasets : sequence of str, optional
        arbench names of the datasets to offer; default all six.
    """

    def __init__(self, corpus_path: str | Path | None = None,
                 datasets: Iterable[str] | None = None) -> None:
        super().__init__(corpus_path)
        names = list(HUB_DATASETS.values()) if datasets is None else list(datasets)
        for name in names:
            hub_id(name)  # raises DataError for an unknown name
        self._names = order_dataset_names(names)
        self.description = self.label = "hub:" + HUB_PREFIX + "*"

    def dataset_names(self) -> list[str]:
        """The offered datasets, in ``STUDY_DATASETS`` order."""
        return list(self._names)

    def _load(self, dataset: str, split: str) -> tuple[list[Question], list[Passage]]:
        try:
            import datasets as hf_datasets
        except ImportError:
            raise DataError("loading the study's tables from the Hugging Face Hub needs the "
                            "'datasets' package: pip install 'arbench[hub]'") from None
        name = hub_id(dataset)
        try:
            table = hf_datasets.load_dataset(name, split=HUB_SPLITS[split])
        except Exception as exc:  # network, auth, missing split: report on one line
            raise DataError(f"{name}: cannot load split {HUB_SPLITS[split]!r}: "
                            f"{_one_line(exc)}") from exc
        return convert_adarague_rows(table, dataset, split, f"{name}[{HUB_SPLITS[split]}]")


class AdaRagueCsvSource(_AdaRagueSource):
    """A directory of AdaRAGUE CSV files named ``<dataset>_<split>.csv``.

    Parameters
    ----------
    path : str or Path
        The directory (e.g. ``shared/data/adarague_csv``).
    corpus_path : str or Path, optional
        A JSON-lines corpus; if omitted, the union of the context paragraphs
        of all CSV files (see :meth:`corpus`). A missing ``path`` raises ``DataError``.
    """

    def __init__(self, path: str | Path, corpus_path: str | Path | None = None) -> None:
        super().__init__(corpus_path)
        self.root = Path(path)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: AdaRAGUE CSV directory not found")
        self.description = f"adarague_csv:{self.root}"
        self.label = str(self.root)

    def _file(self, dataset: str, split: str) -> Path:
        return self.root / f"{dataset}_{split}.csv"

    def dataset_names(self) -> list[str]:
        """Datasets with a ``<dataset>_test.csv``: study datasets first, then alphabetical."""
        return order_dataset_names(p.name[: -len("_test.csv")]
                                   for p in self.root.glob("*_test.csv") if p.is_file())

    def _splits(self, dataset: str) -> list[str]:
        return [s for s in SPLITS if self._file(dataset, s).is_file()]

    def _load(self, dataset: str, split: str) -> tuple[list[Question], list[Passage]]:
        return read_adarague_csv(self._file(dataset, split), dataset, split)
