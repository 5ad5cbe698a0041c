"""Example questions for the chat's first screen, from the knowledge base it answers from:
the shipped regression questions (retrieval/regression.jsonl) whose page is ingested, one
per page, else a question about each of the latest documents' titles."""

from __future__ import annotations

import json
from pathlib import Path

from feedback.store import Store

REGRESSION_SET = Path(__file__).with_name("regression.jsonl")


def regression_set() -> list[dict]:
    """The shipped questions about the shipped pages: {"query", "document"} each."""
    return [json.loads(line) for line in REGRESSION_SET.read_text().splitlines() if line]


def example_questions(store: Store, seed_dir: Path | None = None, n: int = 3) -> list[str]:
    """Up to `n` questions; `seed_dir` is the folder an empty knowledge base ingests on its
    first question (a fresh server's first screen comes before it)."""
    docs = store.query("SELECT path, title FROM documents ORDER BY id DESC")
    ingested = {Path(d["path"]).name for d in docs}
    if not docs and seed_dir is not None and seed_dir.is_dir():
        ingested = {p.name for p in seed_dir.iterdir()}
    out, pages = [], set()
    for item in regression_set():
        if item["document"] in ingested and item["document"] not in pages:
            pages.add(item["document"])
            out.append(item["query"])
    for d in docs:  # a knowledge base of its own: ask about what it holds
        title = (d["title"] or Path(d["path"]).stem).strip()
        if title and len(out) < n:
            out.append(f"What does “{title}” say?")
    return out[:n]
