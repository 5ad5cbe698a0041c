"""What the admin tab shows, as plain functions of what chat.web.admin returns: the feedback
tables, the training run's progress, curves and gate verdict, and the adapter and prompt
tables."""

import html
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
from matplotlib.figure import Figure

from chat.web.plots import run_figures, thumbs_down_figure
from feedback.store import RATING_REASONS
from training.runs import FINISHED


def progress_html(run: dict | None, now: datetime | None = None) -> str:
    """The run's bar and one line: phase, step, time taken and, while it trains, the time
    left at the pace of the steps so far. Training done, the bar stays full through the
    gate."""
    if not run:
        return "<div id='train-progress'>No training run yet.</div>"
    p = run.get("progress") or {}
    step, total = p.get("step") or 0, p.get("total") or 0
    done, phase = run["status"] in FINISHED, p.get("phase", "")
    pct = (100 if (done and run["status"] == "succeeded") or phase == "gate"
           else int(100 * step / total) if total else 0)
    label = f"run {run['id']} · {run['method']} · {run['status']} · " + PHASES.get(phase, phase)
    if total:
        label += f" · step {step}/{total}"
    label += _timing(run, p, step, total, now or datetime.now(UTC))
    return (f"<div id='train-progress' data-status='{run['status']}'>"
            f"<div style='background:#eee;border-radius:6px'><div style='width:{pct}%;"
            f"background:#4a8;color:white;padding:4px;border-radius:6px'>{pct}%</div></div>"
            f"<small>{label}</small></div>")


PHASES = {"gate": "training done, the gate is checking the candidate",
          "preparing": "preparing the data", "done": "done"}


def _timing(run: dict, p: dict, step: int, total: int, now: datetime) -> str:
    started = _when(run.get("started_at"))
    end = _when(run.get("finished_at")) or now
    out = f" · {_duration(end - started)} so far" if started and not run.get("finished_at") \
        else f" · took {_duration(end - started)}" if started else ""
    since = _when(p.get("since"))
    if p.get("phase") == "training" and since and step >= 1 and total > step:
        left = (now - since) / step * (total - step)
        out += f" · about {_duration(left)} left"
    return out


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def verdict_md(run: dict | None) -> str:
    """A finished run in words: the gate's verdict, its figures as a table, and why it failed."""
    if not run or run["status"] not in FINISHED:
        return ""
    if run["status"] in ("failed", "cancelled"):
        return f"**Run {run['status']}**: {run.get('error') or ''}"
    metrics = run.get("metrics") or {}
    gate = metrics.get("gate", {})
    verdict = gate.get("verdict") or ("passed" if gate.get("passed") else "failed")
    served = ("now served" if metrics.get("activated") else
              f"not activated: {metrics.get('not_activated_because') or 'activate was off'}"
              if gate.get("passed") else "never served")
    verdict = "Gate: no visible change" if verdict == "no visible change" else f"Gate {verdict}"
    version = run.get("adapter_version") or metrics.get("retriever_version")
    lines = [f"**{verdict}** for {version} ({run['method']}, {served})",
             "", "| check | what it asks | candidate | compared with |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in gate_rows(gate)]
    lines += [""] + [f"- {reason}" for reason in gate.get("reasons", [])]
    return "\n".join(lines).rstrip()


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


RETRIEVAL_CHECKS = [  # (figure, what it asks), for held-out marks and the regression set
    ("mrr", "how high the first passage marked helped ranks (1 = always first)"),
    ("hit@3", "share of questions with a helped passage in the top 3"),
    ("not_relevant@3", "share of questions with a passage marked not relevant in the top 3 "
                       "(lower is better)"),
]


def retrieval_gate_rows(gate: dict) -> list[tuple[str, str, str, str]]:
    """The retrieval gate's figures: held-out marks (each question ranked by a map that never
    saw it) and the shipped regression questions, against the served version."""
    rows = []
    for part, label in (("heldout", "held-out marks"), ("regression", "regression questions")):
        before, after = gate[f"{part}_before"], gate[f"{part}_after"]
        for key, asks in RETRIEVAL_CHECKS:
            if before.get(key) is not None:
                rows.append((f"{key}, {label}", asks, _num(after.get(key)),
                             f"{gate['compared_with']} {_num(before[key])}"))
    return rows


def gate_rows(gate: dict) -> list[tuple[str, str, str, str]]:
    """(check, what it means, candidate's figure, what it was compared with) for each check
    the gate ran."""
    if "heldout_before" in gate:
        return retrieval_gate_rows(gate)
    rows = []
    if gate.get("n_heldout") is not None:
        held = "pairs" if gate.get("pref_kind", "pairs") == "pairs" else "thumbs"
        active = gate.get("pref_accuracy_active")
        rows.append((f"preference accuracy on {gate['n_heldout']} held-out {held}",
                     "did it learn which answers users liked, on feedback it never saw",
                     _num(gate.get("pref_accuracy")),
                     "no adapter active" if active is None else f"active adapter {_num(active)}"))
    if gate.get("visible_share") is not None:
        rows.append((f"greedy answers to {gate['visible_prompts']} held-out questions that read "
                     "like the liked feedback", "will users see the change in its answers",
                     f"{gate['visible_share']:.0%}",
                     f"served now {gate['visible_share_served']:.0%}"))
    rows += _damage_rows(gate)
    if gate.get("reward_candidate") is not None:
        rows.append(("reward model score", "the reward model's view of its answers",
                     _num(gate["reward_candidate"]), f"active {_num(gate.get('reward_active'))}"))
    return rows


def _damage_rows(gate: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    if gate.get("ppl_candidate") is not None:
        rows.append(("perplexity on the reference set",
                     "how surprised it is by well-written answers (rises with any new style)",
                     _num(gate["ppl_candidate"]), f"base model {_num(gate.get('ppl_base'))} "
                     f"(×{_num(gate.get('ppl_ratio'))})"))
    if gate.get("interior_kl") is not None:
        rows.append(("drift inside the reference answers (median token KL)",
                     "does its language change away from where the preference acts",
                     _num(gate["interior_kl"]), "base model 0"))
    if gate.get("facts_kept") is not None:
        rows.append((f"facts kept, of {gate.get('facts_right_base')} the base gets right",
                     "does it still know what it knew (the right answer likelier than a wrong "
                     "one)", f"{gate['facts_kept']:.0%}", "base model 100%"))
    if gate.get("facts_lead_drop") is not None:
        rows.append(("how much less sure of those facts (nats)",
                     "the right answer's lead over the wrong one, fallen on average",
                     _num(gate["facts_lead_drop"]), "base model 0"))
    if gate.get("repetition") is not None and gate.get("repetition_served") is not None:
        rows.append(("repeated word 4-grams in its answers", "do its answers loop",
                     f"{gate['repetition']:.0%}", f"served now {gate['repetition_served']:.0%}"))
    return rows


def stats_md(stats: dict) -> str:
    """feedback_stats() as short tables: what came in, why answers were disliked (and whether
    that blames retrieval or generation), and how each adapter version fares."""
    kinds = stats["kinds"]
    lines = ["| " + " | ".join(k.replace("_", " ") for k in kinds) + " |",
             "|" + "---|" * len(kinds), "| " + " | ".join(str(v) for v in kinds.values()) + " |"]
    extras = [f"{name}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items())
              for name, key in (("preferences by source", "preferences_by_source"),
                                ("comparisons by choice", "comparisons_by_choice"))
              if stats[key]]
    lines += ["", "; ".join(extras)] if extras else []
    if stats["reasons"]:
        lines += ["", "| thumbs-down reason | n | blames |", "|---|---|---|"]
        lines += [f"| {reason} | {n} | {RATING_REASONS.get(reason, 'unspecified')} |"
                  for reason, n in stats["reasons"].items()]
    if stats["by_adapter"]:
        lines += ["", "| adapter | answers | thumbs up | thumbs down | thumbs-down rate |",
                  "|---|---|---|---|---|"]
        for version, s in stats["by_adapter"].items():
            rate = s["thumbs_down_rate"]
            lines.append(f"| {'base' if version == '(none)' else version} | {s['answers']} | "
                         f"{s['thumbs_up']} | {s['thumbs_down']} | "
                         f"{'—' if rate is None else f'{100 * rate:.0f}%'} |")
    return "\n".join(lines)


def serving_md(info: dict) -> str:
    return (f"**Serving** {info['model']} on {info['device']}, fast path `{info['fast_path']}`: "
            f"decode steps read {info['decode']}; prompts read {info['prompts']}.")


def _count_ids(ids) -> int:
    if isinstance(ids, dict):
        return sum(_count_ids(v) for v in ids.values())
    return len(ids) if isinstance(ids, list) else 0


NOTHING_YET = "nothing yet"
RECENT_COLUMNS = ["kind", "created_at", "user", "answer", "detail", "reason"]


def or_nothing_yet(frame: pd.DataFrame) -> pd.DataFrame:
    """An empty table says so in its first cell, under its own headers."""
    if len(frame):
        return frame
    return empty_table(list(frame.columns))


def empty_table(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([[NOTHING_YET] + [""] * (len(columns) - 1)], columns=columns)


ADAPTER_COLUMNS = ["version", "status", "method", "parent_version", "created_at",
                   "activated_at", "n_feedback", "pref_accuracy", "ppl_ratio"]


def adapters_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per adapter version: where it came from and what its gate measured."""
    table = []
    for r in rows:
        meta, gate = r.get("meta") or {}, (r.get("metrics") or {}).get("gate", {})
        table.append([r["version"], r["status"], r["method"], r.get("parent_version"),
                      r["created_at"][:19], (r.get("activated_at") or "")[:19],
                      _count_ids(meta.get("feedback_ids")), gate.get("pref_accuracy"),
                      gate.get("ppl_ratio")])
    return or_nothing_yet(pd.DataFrame(table, columns=ADAPTER_COLUMNS))


PROMPT_COLUMNS = ["version", "status", "note", "system_prompt", "few_shot"]


def prompts_frame(rows: list[dict]) -> pd.DataFrame:
    return or_nothing_yet(pd.DataFrame(
        [[r["version"], r["status"], r["note"], r["system_prompt"][:120],
          len(json.loads(r["few_shot_json"])) // 2] for r in rows], columns=PROMPT_COLUMNS))


def documents_frame(rows: list[dict]) -> pd.DataFrame:
    return or_nothing_yet(pd.DataFrame(rows or [],
                                       columns=list(rows[0]) if rows else ["id", "path"]))


def side_by_side_html(rows: list[dict]) -> str:
    """Each question above its active and candidate answers in two columns that wrap (one
    column on a narrow screen): read without scrolling sideways."""
    def pane(title: str, text: str) -> str:
        return f"<div><h4>{title}</h4><div class='answer'>{html.escape(text)}</div></div>"
    if not rows:
        return f"<p>{NOTHING_YET}</p>"
    return "".join(f"<div class='side-by-side'><p><b>{html.escape(r['question'])}</b></p>"
                   f"<div class='panes'>{pane('active', r['active'])}"
                   f"{pane('candidate', r['candidate'])}</div></div>" for r in rows)


def run_ended(run: dict | None, seen: dict | None) -> tuple[str | None, dict | None]:
    """What to tell an admin page that saw `seen` (the run's id and status at its last look)
    now that the latest run is `run`: a line once a run it saw going has ended, else None."""
    now = {"id": run["id"], "status": run["status"]} if run else None
    if not run or not seen or seen.get("id") != run["id"] or seen.get("status") in FINISHED \
            or run["status"] not in FINISHED:
        return None, now
    gate = (run.get("metrics") or {}).get("gate", {})
    if run["status"] == "succeeded":
        served = "is now served" if (run.get("metrics") or {}).get("activated") \
            else "is a candidate, not served"
        return f"Run {run['id']} passed the gate: {run['adapter_version']} {served}.", now
    if run["status"] == "rejected":
        why = "; ".join(gate.get("reasons") or []) or gate.get("verdict") or "the gate"
        return f"Run {run['id']} was rejected ({run['adapter_version']}): {why}", now
    return f"Run {run['id']} {run['status']}: {run.get('error') or ''}".rstrip(": "), now


def training_view(run: dict | None) -> tuple[str, Figure, Figure, str]:
    """The training section's progress bar, loss and reward curves, and verdict."""
    return progress_html(run), *run_figures(run), verdict_md(run)


def dashboard_view(info: dict, stats: dict, trend: tuple[list[dict], list[dict]],
                   recent: list[dict]) -> tuple[str, Figure, pd.DataFrame]:
    """What is served and the feedback tables; thumbs-down rate per day and version, with the
    moments versions began to be served; latest feedback."""
    return (serving_md(info) + "\n\n" + stats_md(stats), thumbs_down_figure(*trend),
            or_nothing_yet(pd.DataFrame(recent, columns=RECENT_COLUMNS)))
