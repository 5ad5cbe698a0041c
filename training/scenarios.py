"""The learning scenario suite: does training learn *any* consistent preference?

For each behaviour (training/scenario_cases.py) and method, through the CLI a user runs:
the base model answers the training and held-out questions (`ask --json`, cached); the
preferred answers are its own answers rewritten (`feedback import`: pairs for dpo, thumbs
for kto); `train --json`; then `ask --json` on the held-out questions with what is served.
Prints, per scenario, the held-out share of answers showing the behaviour before and after,
the gate's figures, training seconds and peak memory.

    python -m training.scenarios [--only NAME,...] [--methods dpo,kto] [--json]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chat.config import load_config
from training.scenario_cases import HELDOUT_QUESTIONS, TRAIN_QUESTIONS, Behaviour, behaviours

ROOT = Path(__file__).resolve().parents[1]
BASE_TOKENS = 160  # base answers that reach this are unfinished: a sign-off could not follow
SHIPPED = Path(__file__).with_name("scenario_answers.jsonl")
TRAIN_ITEMS = 60  # pairs, or questions rated twice (one thumb up, one down)


def cli(data_dir: Path, *args: str, models: Path | None = None) -> str:
    """Run `launch.py ARGS` on one data folder; its stdout (the command must succeed)."""
    env = {**os.environ, "CHAT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "CHAT_RATE_LIMIT_PER_MINUTE": "0"}  # the suite asks many questions a minute
    if models is not None:
        env["CHAT_MODEL_CACHE"] = str(models)
    proc = subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"launch.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def ask(data_dir: Path, questions: list[str], tokens: int, models: Path,
        adapter: str | None = None) -> list[dict]:
    """Greedy answers to each question, as `ask --json` prints them."""
    qfile = data_dir / "questions.txt"
    qfile.write_text("\n".join(questions) + "\n")
    args = ["ask", "--questions", str(qfile), "--json", "--temperature", "0",
            "--max-new-tokens", str(tokens)] + (["--adapter", adapter] if adapter else [])
    lines = [json.loads(line) for line in cli(data_dir, *args, models=models).splitlines()
             if line.startswith("{")]
    if len(lines) != len(questions):
        raise RuntimeError(f"asked {len(questions)} questions, got {len(lines)} answers")
    return lines


def base_answers(work: Path, models: Path, refresh: bool = False) -> dict[str, dict]:
    """The base model's greedy answers to every suite question: the shipped ones when they
    are this base model's (made by this function, `--refresh-base`), else asked now."""
    model = load_config().base_model
    questions = TRAIN_QUESTIONS + HELDOUT_QUESTIONS
    if SHIPPED.exists() and not refresh:
        known = {r["question"]: r for r in map(json.loads, SHIPPED.read_text().splitlines())}
        if set(questions) <= known.keys() and all(r["model"] == model for r in known.values()):
            return known
    data_dir = work / "base"
    data_dir.mkdir(parents=True, exist_ok=True)
    asked = ask(data_dir, questions, BASE_TOKENS, models)
    out = {q: {"question": q, "answer": a["answer"], "finished": a["finish_reason"] == "stop",
               "model": model} for q, a in zip(questions, asked, strict=True)}
    fresh = work / SHIPPED.name
    fresh.write_text("".join(json.dumps(row) + "\n" for row in out.values()))
    print(f"base answers written to {fresh} (copy to {SHIPPED} to ship them)", file=sys.stderr)
    return out


def feedback_lines(b: Behaviour, method: str, base: dict[str, dict]) -> list[dict]:
    """Pairs (dpo) or thumbs (kto) over the base model's own finished answers."""
    usable = [base[q] for q in TRAIN_QUESTIONS
              if base[q]["finished"] and b.applies(base[q]["answer"])][:TRAIN_ITEMS]
    lines = []
    for row in usable:
        q, plain = row["question"], row["answer"]
        if method == "dpo":
            lines.append({"type": "preference", "prompt": q, "chosen": b.rewrite(plain),
                          "rejected": plain, "user": "suite"})
        else:
            lines += [{"type": "rating", "prompt": q, "completion": b.rewrite(plain),
                       "value": 1, "user": "suite"},
                      {"type": "rating", "prompt": q, "completion": plain, "value": -1,
                       "user": "suite"}]
    return lines


def share(b: Behaviour, answers: list[str]) -> float:
    return round(sum(map(b.shows, answers)) / max(1, len(answers)), 3)


def words_ratio(after: list[str], before: list[str]) -> float:
    def words(texts):
        return sum(len(t.split()) for t in texts)
    return round(words(after) / max(1, words(before)), 2)


def run_scenario(b: Behaviour, method: str, work: Path, base: dict[str, dict], models: Path,
                 train_args: list[str]) -> dict:
    data_dir = work / f"{b.name}-{method}"
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = feedback_lines(b, method, base)
    (data_dir / "feedback.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cli(data_dir, "feedback", "import", str(data_dir / "feedback.jsonl"), models=models)
    started = time.monotonic()
    out = json.loads(cli(data_dir, "train", "--method", method, "--json", *train_args,
                         models=models).splitlines()[-1])
    wall = time.monotonic() - started
    # held-out questions the behaviour can be shown on, as the base answered them
    held = [q for q in HELDOUT_QUESTIONS if b.applies(base[q]["answer"])]
    after = [a["answer"] for a in ask(data_dir, held, b.ask_tokens, models)]  # what serves
    gate, cost = out.get("gate") or {}, out.get("cost") or {}
    before = [base[q]["answer"] for q in held]
    return {"scenario": b.name, "method": method, "what": b.what, "n_train": out["n_train"],
            "feedback_rows": len(lines), "heldout_questions": len(held),
            "share_before": share(b, before), "share_after": share(b, after),
            # a side effect users would notice: how long answers are now (full answers only)
            "words_after_vs_before": words_ratio(after, before) if b.ask_tokens >= BASE_TOKENS
            else None, "activated": out["activated"],
            "verdict": gate.get("verdict"), "pref_accuracy": gate.get("pref_accuracy"),
            "ppl_ratio": gate.get("ppl_ratio"), "interior_kl": gate.get("interior_kl"),
            "facts_kept": gate.get("facts_kept"), "facts_lead_drop": gate.get("facts_lead_drop"),
            "repetition": gate.get("repetition"),
            "visible_share": gate.get("visible_share"), "reasons": gate.get("reasons"),
            "steps": (out.get("train") or {}).get("steps"),
            "kept_step": (out.get("train") or {}).get("kept_step"),
            "train_seconds": cost.get("train_seconds"), "gate_seconds": cost.get("gate_seconds"),
            "run_wall_seconds": round(wall, 1), "peak_rss_mib": cost.get("peak_rss_mib"),
            "examples": after[:2]}


COLUMNS = [("scenario", 10), ("method", 6), ("n_train", 7), ("share_before", 12),
           ("share_after", 11), ("words_after_vs_before", 21), ("verdict", 17),
           ("pref_accuracy", 13), ("ppl_ratio", 9), ("interior_kl", 11),
           ("facts_lead_drop", 15), ("repetition", 10), ("steps", 5), ("kept_step", 9),
           ("train_seconds", 13), ("peak_rss_mib", 12)]


def table(rows: list[dict]) -> str:
    head = " ".join(name.ljust(width) for name, width in COLUMNS)
    body = [" ".join(str(row.get(name)).ljust(width) for name, width in COLUMNS)
            for row in rows]
    return "\n".join([head, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.scenarios", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated behaviours")
    p.add_argument("--methods", default="dpo,kto", help="comma-separated: dpo, kto, auto")
    p.add_argument("--variant", type=int, default=0, help="another opener / sign-off phrase")
    p.add_argument("--work", default=None, help="folder kept for the runs (default: temp)")
    p.add_argument("--models", default=str(ROOT / "data" / "models"),
                   help="the converted model cache to share (default data/models)")
    p.add_argument("--train-arg", action="append", default=[], dest="train_args",
                   help="passed to `train` (repeat), e.g. --train-arg=--epochs=3")
    p.add_argument("--refresh-base", action="store_true",
                   help="ask the base model again instead of using the shipped answers")
    p.add_argument("--json", action="store_true", help="one JSON object a scenario")
    args = p.parse_args(argv)
    known = behaviours(args.variant)
    names = args.only.split(",") if args.only else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown behaviour(s) {', '.join(unknown)}; known: {', '.join(known)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="scenarios-")).resolve()
    base = base_answers(work, Path(args.models), args.refresh_base)
    rows = []
    for name in names:
        for method in args.methods.split(","):
            row = run_scenario(known[name], method, work, base, Path(args.models),
                               args.train_args)
            rows.append(row)
            print(json.dumps(row) if args.json else table([row]).splitlines()[1], flush=True)
    if not args.json:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
