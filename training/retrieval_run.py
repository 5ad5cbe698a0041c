"""`train --method retrieval`: the source feedback split by query, a query map trained on it
(retrieval/query_map.py), the retrieval gate, and the version registered and maybe served.
Runs inside the same run process, progress and cancel as an adapter (training/runner.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chat.config import Config
from chat.errors import NotEnoughData
from feedback import sources
from feedback.store import Store, utcnow
from retrieval import versions
from retrieval.examples import regression_set
from retrieval.query_map import Example, QueryMap, apply, fit, rank_metrics
from retrieval.retriever import Retriever
from training.config import RetrievalSettings, TrainSettings
from training.runs import update_run
from training.trainers import Cancelled, Hooks


@dataclass
class Query:
    """One question's marks: the chunks that helped and those that were not relevant."""
    text: str
    helped: set[int] = field(default_factory=set)
    unwanted: set[int] = field(default_factory=set)
    keys: list[str] = field(default_factory=list)
    users: set[str] = field(default_factory=set)


def group_marks(marks: list[sources.SourceMark], known_chunks: set[int]) -> list[Query]:
    """Marks by question (the latest mark on a chunk wins), chunks since deleted left out."""
    by_text: dict[str, Query] = {}
    for m in marks:
        if m.chunk_id not in known_chunks:
            continue
        q = by_text.setdefault(m.query.strip(), Query(m.query.strip()))
        (q.helped if m.value > 0 else q.unwanted).add(m.chunk_id)
        (q.unwanted if m.value > 0 else q.helped).discard(m.chunk_id)
        q.keys.append(m.key)
        q.users.add(m.user)
    return [by_text[t] for t in sorted(by_text)]


def prepare(store: Store, cfg: Config, s: TrainSettings) -> dict:
    """The marks by question, each question given a fold (every question is held out once,
    by a map trained on the other folds); NotEnoughData before any model is loaded."""
    known = {r["id"] for r in store.query("SELECT id FROM chunks")}
    queries = group_marks(sources.training_marks(store), known)
    n_marks = sum(len(q.helped) + len(q.unwanted) for q in queries)
    if n_marks < s.retrieval.min_marks or len(queries) < 2:
        raise NotEnoughData(
            f"only {n_marks} source marks on {len(queries)} questions (at least "
            f"{s.retrieval.min_marks} on 2 questions needed); mark sources under answers as "
            "helped or not relevant, or import source feedback")
    order = np.random.default_rng(s.data.seed).permutation(len(queries))
    folds = min(s.retrieval.folds, len(queries))
    fold_of = {int(q): n % folds for n, q in enumerate(order)}
    return {"method": "retrieval", "why": f"requested retrieval ({folds}-fold held-out)",
            "queries": queries, "folds": [[q for i, q in enumerate(queries) if fold_of[i] == f]
                                          for f in range(folds)], "n_marks": n_marks}


def ranked(retriever: Retriever, vectors: np.ndarray, query_map: QueryMap | None,
           depth: int) -> list[list[int]]:
    """Chunk ids best first for each embedded question, as a map (None: plain) ranks them."""
    if not len(vectors):
        return []
    return [[i for i, _ in row] for row in retriever.index.search(apply(query_map, vectors),
                                                                  depth)]


def examples(retriever: Retriever, queries: list[Query], r: RetrievalSettings
             ) -> dict[str, Example]:
    """Each question embedded and searched once per run, by its text: the folds and the
    final map take their rows from here."""
    index = retriever.index
    vectors = retriever.embedder.encode([q.text for q in queries], progress=False)
    out = {}
    for q, vector, top in zip(queries, vectors, index.search(vectors, r.candidates),
                              strict=True):
        ids = list(dict.fromkeys([i for i, _ in top] + sorted(q.helped | q.unwanted)))
        ids = [i for i in ids if i in index.keys]
        marks = np.array([1 if i in q.helped else -1 if i in q.unwanted else 0 for i in ids])
        out[q.text] = Example(vector, index.vectors(ids), marks)
    return out


def regression_items(store: Store) -> list[tuple[str, set[int]]]:
    """The shipped regression questions whose document is in this knowledge base, each with
    the chunk ids of that document."""
    chunks: dict[str, set[int]] = {}
    for r in store.query("SELECT c.id, d.path FROM chunks c JOIN documents d "
                         "ON d.id = c.document_id"):
        chunks.setdefault(Path(r["path"]).name, set()).add(r["id"])
    items = regression_set()
    return [(i["query"], chunks[i["document"]]) for i in items if i["document"] in chunks]


def train_map(train: list[Example], r: RetrievalSettings, seed: int,
              on_step=None) -> tuple[QueryMap, list[float]]:
    weights, losses = fit(train, steps=r.steps, learning_rate=r.learning_rate,
                          temperature=r.temperature, identity_weight=r.identity_weight,
                          on_step=on_step, seed=seed)
    return QueryMap(weights, np.stack([e.query for e in train]), r.near_start,
                    r.near_full), losses


def heldout_ranks(retriever: Retriever, folds: list[list[Query]], rows: dict[str, Example],
                  r: RetrievalSettings, seed: int) -> tuple[list[Query], list[list[int]]]:
    """Each fold's questions ranked by a map trained on the other folds."""
    queries, ranks = [], []
    for f, fold in enumerate(folds):
        rest = [rows[q.text] for g, other in enumerate(folds) if g != f for q in other]
        fold_map, _ = train_map(rest, r, seed)
        queries += fold
        ranks += ranked(retriever, np.stack([rows[q.text].query for q in fold]), fold_map,
                        r.depth)
    return queries, ranks


def judge(retriever: Retriever, store: Store, folds: list[list[Query]],
          rows: dict[str, Example], final: QueryMap, active: str | None,
          r: RetrievalSettings, seed: int) -> dict:
    """Held-out marks (each question ranked by a map that never saw it) and the regression
    set (by the map to be served), against the served version: helped chunks must rise,
    unwanted ones fall, the regression set hold."""
    heldout, after_ranks = heldout_ranks(retriever, folds, rows, r, seed)
    served = retriever.maps.get(active)
    helped, unwanted = [q.helped for q in heldout], [q.unwanted for q in heldout]
    vectors = np.stack([rows[q.text].query for q in heldout])
    before = rank_metrics(ranked(retriever, vectors, served, r.depth), helped, unwanted, r.k)
    after = rank_metrics(after_ranks, helped, unwanted, r.k)
    reg = regression_items(store)
    reg_sets, none = [c for _, c in reg], [set()] * len(reg)
    reg_vectors = (retriever.embedder.encode([t for t, _ in reg], progress=False) if reg
                   else np.zeros((0, 0)))
    reg_before, reg_after = (rank_metrics(ranked(retriever, reg_vectors, m, r.depth), reg_sets,
                                          none, r.k) for m in (served, final))
    hit, bad = f"hit@{r.k}", f"not_relevant@{r.k}"
    reasons, better = [], []
    for key, up in (("mrr", True), (hit, True), (bad, False), ("helped_mean_rank", False),
                    ("not_relevant_mean_rank", True)):
        b, a = before[key], after[key]
        if b is None:
            continue
        if (a < b) if up else (a > b):
            reasons.append(f"held-out {key} got worse: {b} -> {a}")
        better.append((a > b) if up else (a < b))
    for key in ("mrr", hit):
        b, a = reg_before[key], reg_after[key]
        if b is not None and a < b - r.max_regression_drop:
            reasons.append(f"regression set {key} fell {b} -> {a}")
    if not reasons and not any(better):
        verdict = "no visible change"
    else:
        verdict = "failed" if reasons else "passed"
    return {"passed": verdict == "passed", "verdict": verdict, "reasons": reasons,
            "heldout_before": before, "heldout_after": after,
            "regression_before": reg_before, "regression_after": reg_after,
            "compared_with": active or "plain embedder", "regression_questions": len(reg)}


def _progress(hooks: Hooks, total: int):
    def on_step(step: int, loss: float) -> None:
        if step % 10 == 0 or step == total:
            hooks.on_log(step, total, {"loss": loss})
            if hooks.should_stop():
                raise Cancelled
    return on_step


def run(store: Store, cfg: Config, s: TrainSettings, run_id: int, hooks: Hooks,
        peak_rss_mib) -> dict:
    prep = prepare(store, cfg, s)
    r = s.retrieval
    update_run(store, run_id, method="retrieval", n_examples=prep["n_marks"],
               progress={"phase": "training", "method": "retrieval", "why": prep["why"]})
    retriever = Retriever(cfg, store)
    started = time.monotonic()
    rows = examples(retriever, prep["queries"], r)
    final, losses = train_map(list(rows.values()), r, s.data.seed, _progress(hooks, r.steps))
    trained = time.monotonic()
    update_run(store, run_id, progress={"phase": "gate", "method": "retrieval"})
    active = versions.active_version(store)
    gate = judge(retriever, store, prep["folds"], rows, final, active, r, s.data.seed)
    if hooks.should_stop():
        raise Cancelled
    queries = prep["queries"]
    metrics = {"gate": gate, "n_train": prep["n_marks"], "n_heldout": prep["n_marks"],
               "why": prep["why"], "train": {"steps": r.steps, "questions": len(queries),
                                             "first_loss": round(losses[0], 4),
                                             "last_loss": round(losses[-1], 4)},
               "cost": {"train_seconds": round(trained - started, 2),
                        "gate_seconds": round(time.monotonic() - trained, 2),
                        "peak_rss_mib": peak_rss_mib()}}
    meta = {"parent_version": active, "hyper_parameters": s.as_dict(), "run_id": run_id,
            "embedder": cfg.embedder, "mark_keys": sorted(k for q in queries for k in q.keys),
            # whose feedback is in it: `users forget` retires it (retrieval/versions.py)
            "feedback_users": sorted({u for q in queries for u in q.users})}
    version = versions.register(store, cfg.data_dir / "retrievers", final, metrics=metrics,
                                meta=meta, passed=gate["passed"], run_id=run_id)
    why_not = None if gate["passed"] else f"the retrieval gate said: {gate['verdict']}"
    if why_not is None and not s.activate:
        why_not = "the run was started with activate off (--no-activate)"
    if why_not is None:
        versions.activate(store, version)
    status = "succeeded" if gate["passed"] else "rejected"
    update_run(store, run_id, status=status, finished_at=utcnow(),
               metrics={**metrics, "retriever_version": version, "activated": why_not is None,
                        **({"not_activated_because": why_not} if why_not else {})},
               progress={"phase": "done", "method": "retrieval"})
    return {"run_id": run_id, "status": status, "retriever_version": version}
