"""Prompt templates for closed-book and retrieval-augmented answers.

The same closed-book prompt produces the graded Never-RAG answer and every
statistic estimators read, so uncertainty is measured on the answer that is
scored (the study scored a different, verbalized-prompt generation; STUDY §9.3).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from retrievers.base import Passage


@dataclass(frozen=True)
class PromptTemplate:
    """System and user text; ``{question}`` and ``{passages}`` are filled in.

    Every field is part of the cache key of the generations it produces.
    """

    name: str
    system: str
    closed_book: str
    with_passages: str
    passage_separator: str = "\n\n"
    max_passage_words: int = 350

    def closed(self, question: str) -> tuple[str, str]:
        """(system, user) of the no-retrieval prompt."""
        return self.system, self.closed_book.format(question=question)

    def augmented(self, question: str, passages: Sequence[Passage]) -> tuple[str, str]:
        """(system, user) of the prompt with retrieved passages, best first."""
        rendered = self.passage_separator.join(
            _truncate_words(p.render(), self.max_passage_words) for p in passages)
        return self.system, self.with_passages.format(question=question, passages=rendered)

    def key(self) -> dict:
        return asdict(self)


def _truncate_words(text: str, limit: int) -> str:
    words = text.split(" ")
    return text if len(words) <= limit else " ".join(words[:limit])


SHORT_ANSWER = PromptTemplate(
    name="short_answer",
    system="You answer questions with a short answer: a name, a place, a date or a few words. "
           "Do not explain.",
    closed_book="Question: {question}\nAnswer:",
    with_passages="Use the passages below to answer the question.\n\n{passages}\n\n"
                  "Question: {question}\nAnswer:",
)

TEMPLATES = {SHORT_ANSWER.name: SHORT_ANSWER}
