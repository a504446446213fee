"""Prompts and text handling shared by the pipelines.

The study's pipelines prompt Llama-3.1-8B with up to 15 HotpotQA chain-of-thought
demonstrations and no chat template. arbench uses the model's chat template
and three short hand-written demonstrations (no dataset question among them),
which fit a small model's context next to 15 passages.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from bench.models.hf_backend import CONTINUATION
from bench.prompts import Messages
from retrievers.base import Passage

COT_SYSTEM = ("Answer the question by reasoning step by step in short sentences. "
              "End with: So the answer is: <short answer>.")

COT_DEMOS: tuple[tuple[str, str], ...] = (
    ("Who was president of the United States when the Eiffel Tower was completed?",
     "The Eiffel Tower was completed in 1889. Benjamin Harrison was president of the "
     "United States in 1889. So the answer is: Benjamin Harrison."),
    ("In which country was the composer of the opera Carmen born?",
     "The opera Carmen was composed by Georges Bizet. Georges Bizet was born in Paris, "
     "France. So the answer is: France."),
    ("What is the capital of Japan?",
     "The capital of Japan is Tokyo. So the answer is: Tokyo."),
)

_ANSWER_IS = re.compile(r"answer is:?\s*(.*)", re.IGNORECASE | re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def render_passages(passages: Sequence[Passage], max_words: int = 350) -> str:
    """Passages as ``Wikipedia Title: …`` blocks joined by blank lines, each cut to
    ``max_words`` words (the study's reader format)."""
    blocks = []
    for passage in passages:
        words = passage.render().split(" ")
        blocks.append(" ".join(words[:max_words]))
    return "\n\n".join(blocks)


def cot_messages(question: str, passages: Sequence[Passage] = (), reasoning: str = ""
                 ) -> Messages:
    """Chain-of-thought prompt: system turn, the demonstrations, then the question
    after the passages (if any); ``reasoning`` so far is continued, not repeated."""
    turns: list[tuple[str, str]] = [("system", COT_SYSTEM)]
    for demo_question, demo_answer in COT_DEMOS:
        turns += [("user", f"Question: {demo_question}"), ("assistant", demo_answer)]
    context = f"{render_passages(passages)}\n\n" if passages else ""
    turns.append(("user", f"{context}Question: {question}"))
    if reasoning:
        turns.append((CONTINUATION, reasoning.rstrip() + " "))
    return tuple(turns)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after ``.``, ``!`` or ``?`` and whitespace)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def first_sentence(text: str) -> str:
    """The first sentence of ``text``; the whole text if it has no sentence end."""
    sentences = split_sentences(text)
    return sentences[0] if sentences else ""


def has_answer(text: str) -> bool:
    """Whether the chain of thought has reached its ``answer is`` statement."""
    return _ANSWER_IS.search(text) is not None


def extract_answer(text: str) -> str:
    """The short answer in ``… So the answer is: X.``; the last sentence otherwise."""
    match = _ANSWER_IS.search(text)
    if match:
        answer = match.group(1).strip()
        answer = first_sentence(answer) if answer else answer
        return answer[:-1].strip() if answer.endswith(".") else answer
    sentences = split_sentences(text)
    return sentences[-1].rstrip(".").strip() if sentences else ""


def tokens_covering(token_texts: Sequence[str], n_chars: int) -> int:
    """How many leading tokens are needed to cover the first ``n_chars`` characters
    of their stripped concatenation (maps a sentence back to its tokens)."""
    covered = 0
    leading = True
    for count, piece in enumerate(token_texts, start=1):
        if leading:
            piece = piece.lstrip()
            leading = not piece
        covered += len(piece)
        if covered >= n_chars and not leading:
            return count
    return len(token_texts)


#: English function words (DRAGIN's and FLARE's "real word" filter).
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each few for from further had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if
in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's
should shouldn't so some such than that that's the their theirs them themselves then there
there's these they they'd they'll they're they've this those through to too under until up
very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
which while who who's whom why why's with won't would wouldn't you you'd you'll you're you've
your yours yourself yourselves answer question so also one may might will shall
""".split())


def is_real_word(token: str) -> bool:
    """A content word: has a letter or digit and is not a stopword."""
    word = token.strip().lower().strip(".,;:!?\"'()[]")
    return bool(re.search(r"[a-z0-9]", word)) and word not in STOPWORDS
