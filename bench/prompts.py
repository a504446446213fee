"""Prompt templates for closed-book and retrieval-augmented answers.

The same closed-book prompt produces the graded Never-RAG answer and every
statistic estimators read, so uncertainty is measured on the answer that is
scored (the study scored a different, verbalized-prompt generation; STUDY §9.3).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from retrievers.base import Passage

#: A chat as (role, content) pairs; what the store hashes and the backend renders.
Messages = tuple[tuple[str, str], ...]

@dataclass(frozen=True)
class PromptTemplate:
    """A system turn, optional demonstration turns, and the question turn.

    ``{question}`` and ``{passages}`` are filled in. Demonstrations are
    (question, answer) pairs shown as earlier user/assistant turns in the
    closed-book format. Every field is part of the cache key of the
    generations it produces.
    """

    name: str
    system: str
    closed_book: str
    with_passages: str
    demos: tuple[tuple[str, str], ...] = ()
    passage_separator: str = "\n\n"
    max_passage_words: int = 350

    def _chat(self, final_user: str) -> Messages:
        turns: list[tuple[str, str]] = [("system", self.system)] if self.system else []
        for question, answer in self.demos:
            turns += [("user", self.closed_book.format(question=question)),
                      ("assistant", answer)]
        return (*turns, ("user", final_user))

    def closed(self, question: str) -> Messages:
        """The no-retrieval prompt."""
        return self._chat(self.closed_book.format(question=question))

    def augmented(self, question: str, passages: Sequence[Passage]) -> Messages:
        """The prompt with retrieved passages, best first."""
        rendered = self.passage_separator.join(
            _truncate_words(p.render(), self.max_passage_words) for p in passages)
        return self._chat(self.with_passages.format(question=question, passages=rendered))

    def key(self) -> dict:
        return asdict(self)


def _truncate_words(text: str, limit: int) -> str:
    words = text.split(" ")
    return text if len(words) <= limit else " ".join(words[:limit])


_SYSTEM = ("You answer questions with a short answer: a name, a place, a date or a few words. "
           "Do not explain.")

SHORT_ANSWER = PromptTemplate(
    name="short_answer",
    system=_SYSTEM,
    closed_book="Question: {question}\nAnswer:",
    with_passages="Use the passages below to answer the question.\n\n{passages}\n\n"
                  "Question: {question}\nAnswer:",
)

# Three demonstrations (general-knowledge facts, none from any dataset) teach a
# small model the answer format: on the demo set they cut answers from 22 to 14
# tokens on average and raise EM from 0.02 to 0.22.
SHORT_ANSWER_FEWSHOT = PromptTemplate(
    name="short_answer_fewshot",
    system=_SYSTEM,
    closed_book=SHORT_ANSWER.closed_book,
    with_passages=SHORT_ANSWER.with_passages,
    demos=(("What is the capital of Japan?", "Tokyo"),
           ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
           ("In which year did World War II end?", "1945")),
)

TEMPLATES = {t.name: t for t in (SHORT_ANSWER_FEWSHOT, SHORT_ANSWER)}
DEFAULT_TEMPLATE = SHORT_ANSWER_FEWSHOT.name
