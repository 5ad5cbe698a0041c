"""A query-side adapter over the frozen embedder: one square matrix W, starting at the
identity, that moves query vectors (q -> qW, re-normalised) toward chunks users marked
"helped" and away from ones marked "not relevant". The corpus is never re-embedded, so a
version is a 384x384 matrix and a rollback is a row update (docs/learning.md, retrieval).
Also the rank metrics the retrieval gate reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return (vectors / norms).astype(np.float32)


@dataclass
class QueryMap:
    """A learned version: the matrix, and the training questions it acts near. A query moves
    by the map in full when it is as close to a trained question as `full` (cosine), not at
    all below `start`, and in between in proportion: a question unlike any that feedback was
    given on is searched as the plain embedder would (docs/learning.md, retrieval)."""
    matrix: np.ndarray  # (d, d)
    trained: np.ndarray  # (n, d) unit vectors of the training questions
    start: float
    full: float

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        moved = _unit(vectors @ self.matrix)
        near = (vectors @ self.trained.T).max(1) if len(self.trained) else np.zeros(len(vectors))
        share = np.clip((near - self.start) / max(self.full - self.start, 1e-6), 0, 1)[:, None]
        return _unit(vectors + share * (moved - vectors))


def apply(query_map: QueryMap | None, vectors: np.ndarray) -> np.ndarray:
    """Query vectors as a version sees them (None: the plain embedder)."""
    return vectors if query_map is None else query_map.apply(vectors)


@dataclass
class Example:
    """One query: its vector, the chunks it is ranked among, and each one's mark (+1 helped,
    -1 not relevant, 0 unmarked: the rest of what the index returned)."""
    query: np.ndarray  # (d,)
    chunks: np.ndarray  # (m, d), unit vectors
    marks: np.ndarray  # (m,) in {1, -1, 0}


def fit(examples: list[Example], *, steps: int, learning_rate: float, temperature: float,
        identity_weight: float, on_step: Callable[[int, float], None] | None = None,
        seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Full-batch Adam on a listwise loss: -log p(helped) over each query's candidates, and
    -log(1 - p(not relevant)); plus identity_weight * ||W - I||^2, which keeps what nobody
    marked where the embedder put it. Returns W and the loss per step."""
    import torch

    torch.manual_seed(seed)
    dim, width = examples[0].query.shape[0], max(len(e.marks) for e in examples)
    queries = torch.from_numpy(np.stack([e.query for e in examples]))
    chunks = torch.zeros(len(examples), width, dim)
    marks = torch.zeros(len(examples), width)
    present = torch.zeros(len(examples), width, dtype=torch.bool)
    for row, e in enumerate(examples):  # padded to one width, so a step is three matmuls
        chunks[row, :len(e.marks)] = torch.from_numpy(e.chunks)
        marks[row, :len(e.marks)] = torch.from_numpy(e.marks.astype(np.float32))
        present[row, :len(e.marks)] = True
    helped, unwanted = marks > 0, marks < 0
    weight = torch.nn.Parameter(torch.eye(dim))
    opt = torch.optim.Adam([weight], lr=learning_rate)
    losses = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        moved = torch.nn.functional.normalize(queries @ weight, dim=1)
        scores = torch.einsum("bmd,bd->bm", chunks, moved) / temperature
        logp = torch.log_softmax(scores.masked_fill(~present, -1e9), dim=1)
        loss = identity_weight * (weight - torch.eye(dim)).pow(2).sum()
        # each query counts once: the mean over its helped chunks, and over its unwanted ones
        per_query = (-(logp * helped).sum(1) / helped.sum(1).clamp(min=1)
                     - (torch.log1p(-logp.exp().clamp(max=1 - 1e-6)) * unwanted).sum(1)
                     / unwanted.sum(1).clamp(min=1))
        loss = loss + per_query.sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return weight.detach().numpy().astype(np.float32), losses


def rank_metrics(ranked: list[list[int]], helped: list[set[int]], unwanted: list[set[int]],
                 k: int) -> dict:
    """MRR and hit@k of the chunks marked helped (over queries that have some), the share of
    queries with a chunk marked not relevant in their top k, and the mean rank (1 = first) of
    every marked chunk, helped and not relevant: these move even when the top does not.
    A chunk not in `ranked` counts as ranked just below its end."""
    rr, hits, bad, good_ranks, bad_ranks = [], [], [], [], []
    for ids, good, worse in zip(ranked, helped, unwanted, strict=True):
        rank = {c: i + 1 for i, c in enumerate(ids)}
        below = len(ids) + 1
        if good:
            first = min(rank.get(c, below) for c in good)
            rr.append(1.0 / first if first < below else 0.0)
            hits.append(first <= k)
            good_ranks += [rank.get(c, below) for c in good]
        if worse:
            bad.append(any(c in worse for c in ids[:k]))
            bad_ranks += [rank.get(c, below) for c in worse]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    return {"mrr": mean(rr), f"hit@{k}": mean(hits), f"not_relevant@{k}": mean(bad),
            "helped_mean_rank": mean(good_ranks), "not_relevant_mean_rank": mean(bad_ranks),
            "queries_helped": len(rr), "queries_not_relevant": len(bad)}
