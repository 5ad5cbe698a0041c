"""The public retrieval-learning scenario, through the CLI only: source feedback on 20
questions (import) -> `train --method retrieval` -> `ask --json` on 10 other questions,
over the shipped knowledge base. Data: tests/data/retrieval_scenario.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chat.config import load_config
from feedback.store import Store

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = json.loads((Path(__file__).parent / "data" / "retrieval_scenario.json").read_text())
TITLES = {p.name: p.read_text().splitlines()[0].lstrip("# ").strip()
          for p in (ROOT / "knowledge").glob("*.md")}


def cli(*args, top_k: int = 3) -> str:
    env = {**os.environ, "CHAT_TOP_K": str(top_k), "CHAT_MIN_SCORE": "0",
           "CHAT_RATE_LIMIT_PER_MINUTE": "0"}
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def ask(tmp_path: Path, items: list[dict], top_k: int = 3) -> list[dict]:
    """One `ask --json` per question (an answer of one token: only the sources matter)."""
    questions = tmp_path / "questions.txt"
    questions.write_text("".join(i["query"] + "\n" for i in items))
    out = cli("ask", "--questions", str(questions), "--json", "--max-new-tokens", "1",
              top_k=top_k)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def hit_at_3(answers: list[dict], items: list[dict]) -> float:
    return sum(TITLES[i["document"]] in [s["document"] for s in a["sources"][:3]]
               for a, i in zip(answers, items, strict=True)) / len(items)


def marks(answer: dict, item: dict) -> list[dict]:
    """What a reader of this answer's sources would say: the target page's best passage
    helped (seen in the full ranking), the other shown passages did not."""
    ranked = answer["sources"]
    best = next(s for s in ranked if s["document"] == TITLES[item["document"]])
    lines = [{"chunk_id": best["chunk_id"], "value": 1}]
    lines += [{"chunk_id": s["chunk_id"], "value": -1} for s in ranked[:3]
              if s["document"] != TITLES[item["document"]]]
    return [{"type": "source", "query": item["query"], "user": f"reader{n % 4}", **line}
            for n, line in enumerate(lines)]


def test_source_feedback_on_20_questions_lifts_hit_at_3_on_10_others(tmp_path):
    train, test = SCENARIO["train"], SCENARIO["test"]
    before = ask(tmp_path, test)
    assert all(a["retriever_version"] is None for a in before)
    ranked = ask(tmp_path, train, top_k=40)  # every passage, to find the target page's best
    feedback = tmp_path / "sources.jsonl"
    feedback.write_text("".join(json.dumps(line) + "\n"
                                for a, i in zip(ranked, train, strict=True)
                                for line in marks(a, i)))
    assert "source" in cli("feedback", "import", str(feedback))

    run = json.loads(cli("train", "--method", "retrieval", "--json").splitlines()[-1])
    assert run["status"] == "succeeded", run
    gate = run["gate"]
    assert gate["heldout_after"]["mrr"] >= gate["heldout_before"]["mrr"]
    assert gate["regression_after"]["mrr"] >= gate["regression_before"]["mrr"]
    after = ask(tmp_path, test)
    assert {a["retriever_version"] for a in after} == {run["retriever_version"]}
    recorded = Store(load_config().db_path).message(after[-1]["message_id"])
    assert recorded["retriever_version"] == run["retriever_version"]
    share_before, share_after = hit_at_3(before, test), hit_at_3(after, test)
    print(f"hit@3 on 10 other questions: {share_before} -> {share_after}")
    assert share_before <= 0.2 and share_after >= 0.8

    listed = json.loads(cli("retrievers", "list", "--json"))
    assert [(r["version"], r["status"]) for r in listed] == [(run["retriever_version"],
                                                              "active")]
    assert cli("retrievers", "rollback").strip() == "the plain embedder is active"
    assert all(a["retriever_version"] is None for a in ask(tmp_path, test[:2]))
