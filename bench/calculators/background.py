"""Background embeddings for relative Mahalanobis distance: generic text through the same LM.

The study embedded 1,000 C4 documents; arbench embeds a seeded sample of the
run's own retrieval corpus (Wikipedia passages), each passage cached on its
own so that any sample size reuses earlier work.
"""
from __future__ import annotations

import numpy as np

from bench.cache import Record
from bench.ledger import Cost
from bench.models.passes import mean_hidden_states
from bench.stores import GenerationStore
from estimators.base import BackgroundEmbeddings
from retrievers.base import Corpus


def background_embeddings(store: GenerationStore, corpus: Corpus, layers, n: int,
                          seed: int) -> BackgroundEmbeddings:
    """Token-mean hidden states at ``layers`` of ``n`` seeded corpus passages."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(corpus), size=min(n, len(corpus)), replace=False).tolist())
    texts = [corpus.passages[i].render() for i in chosen]
    layer_list = [int(x) for x in layers]

    def compute(chunk: list[int]) -> list[Record]:
        hidden = mean_hidden_states(store.backend, [texts[i] for i in chunk], layer_list)
        return [Record({"cost": Cost(forward_passes=1).to_dict()}, {"hidden_mean": h})
                for h in hidden]

    identities = [{"background_text": text, "layers": layer_list} for text in texts]
    records = store.cached("background", identities, [len(t) for t in texts], compute, 16,
                           "background")
    return BackgroundEmbeddings(np.stack([r.arrays["hidden_mean"] for r in records]),
                                np.asarray(layer_list, dtype=np.int64))
