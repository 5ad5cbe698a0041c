"""Feedback counts: by kind, by reason, by adapter version and by (prompt, adapter) version;
and the admin console's views of the latest feedback."""

from __future__ import annotations

from chat.errors import BadInput
from feedback import sources
from feedback.store import RATING_REASONS, Store


def _rate(down: int, up: int) -> float | None:
    return round(down / (up + down), 4) if up + down else None


def _by_versions(store: Store, keys: str) -> list[dict]:
    """Messages and thumbs grouped by the given message columns."""
    return store.query(
        f"SELECT {keys}, count(DISTINCT m.id) AS messages, "
        "count(CASE WHEN r.value = 1 THEN 1 END) AS up, "
        "count(CASE WHEN r.value = -1 THEN 1 END) AS down "
        "FROM messages m LEFT JOIN ratings r ON r.message_id = m.id "
        f"WHERE m.role = 'assistant' GROUP BY {keys} ORDER BY {keys}"
    )


def feedback_stats(store: Store) -> dict:
    """All counts as one JSON-able dict (thumbs-down rate = down / (up + down))."""
    one = lambda sql: store.db.execute(sql).fetchone()[0]  # noqa: E731
    kinds = {
        "conversations": one("SELECT count(*) FROM conversations"),
        "answers": one("SELECT count(*) FROM messages WHERE role = 'assistant'"),
        "thumbs_up": one("SELECT count(*) FROM ratings WHERE value = 1"),
        "thumbs_down": one("SELECT count(*) FROM ratings WHERE value = -1"),
        "corrections": one("SELECT count(*) FROM corrections"),
        "preferences": one("SELECT count(*) FROM preferences"),
        "comparisons": one("SELECT count(*) FROM comparisons"),
    }
    preferences_by_source = {r["source"]: r["n"] for r in store.query(
        "SELECT source, count(*) AS n FROM preferences GROUP BY source ORDER BY source")}
    comparisons_by_choice = {r["choice"]: r["n"] for r in store.query(
        "SELECT choice, count(*) AS n FROM comparisons GROUP BY choice ORDER BY choice")}
    reasons = {r["reason"] or "(none)": r["n"] for r in store.query(
        "SELECT reason, count(*) AS n FROM ratings WHERE value = -1 GROUP BY reason "
        "ORDER BY n DESC, reason")}
    blame: dict[str, int] = {}
    for reason, n in reasons.items():
        part = RATING_REASONS.get(reason, "unspecified")
        blame[part] = blame.get(part, 0) + n
    by_adapter = {}
    for r in _by_versions(store, "m.adapter_version"):
        by_adapter[r["adapter_version"] or "(none)"] = {
            "answers": r["messages"], "thumbs_up": r["up"], "thumbs_down": r["down"],
            "thumbs_down_rate": _rate(r["down"], r["up"])}
    by_prompt_adapter = [
        {"prompt_version": r["prompt_version"], "adapter_version": r["adapter_version"],
         "answers": r["messages"], "thumbs_up": r["up"], "thumbs_down": r["down"],
         "thumbs_down_rate": _rate(r["down"], r["up"])}
        for r in _by_versions(store, "m.prompt_version, m.adapter_version")]
    return {"kinds": kinds, "preferences_by_source": preferences_by_source,
            "comparisons_by_choice": comparisons_by_choice, "reasons": reasons,
            "blame": blame, "by_adapter": by_adapter, "by_prompt_adapter": by_prompt_adapter,
            # marks on sources, and thumbs-down blaming them, per document: worst first
            "sources_by_document": sources.by_document(store)}


def format_stats(stats: dict) -> str:
    """A short human-readable summary of feedback_stats()."""
    lines = ["kind: " + ", ".join(f"{k} {v}" for k, v in stats["kinds"].items())]
    if stats["reasons"]:
        lines.append("thumbs-down reasons: "
                     + ", ".join(f"{k} {v}" for k, v in stats["reasons"].items()))
    if stats["blame"]:
        lines.append("thumbs-down blame: "
                     + ", ".join(f"{k} {v}" for k, v in stats["blame"].items()))
    for d in stats["sources_by_document"][:10]:
        lines.append(f"source {d['document']}: not relevant {d['not_relevant']} ("
                     f"{d['implied_by_thumbs_down']} from thumbs-down), helped {d['helped']}")
    for version, s in stats["by_adapter"].items():
        lines.append(f"adapter {version}: {_thumbs(s)}")
    for s in stats["by_prompt_adapter"]:
        if s["prompt_version"] is not None:
            lines.append(f"prompt v{s['prompt_version']} + adapter {s['adapter_version']}: "
                         f"{_thumbs(s)}")
        else:  # imported rows: their prompt came with the file, no profile of ours
            lines.append(f"no prompt profile + adapter {s['adapter_version']}: {_thumbs(s)}")
    return "\n".join(lines)


def _thumbs(s: dict) -> str:
    rate = "-" if s["thumbs_down_rate"] is None else f"{100 * s['thumbs_down_rate']:.1f}%"
    return (f"{s['answers']} answers, +{s['thumbs_up']} -{s['thumbs_down']} "
            f"(thumbs-down rate {rate})")


def feedback_since(store: Store, since: str) -> int:
    """Preference pairs and ratings created after `since` (an ISO time; "" counts them all)."""
    row = store.one("SELECT (SELECT count(*) FROM preferences WHERE created_at > ?) + "
                    "(SELECT count(*) FROM ratings WHERE created_at > ?) AS n", (since, since))
    return row["n"]


def thumbs_down_by_day(store: Store) -> list[dict]:
    """Thumbs-down rate per adapter version per day (rows for a line plot)."""
    return store.query(
        "SELECT substr(r.created_at, 1, 10) AS day, coalesce(m.adapter_version, 'base') "
        "AS adapter, avg(r.value = -1) AS down_rate, count(*) AS n FROM ratings r "
        "JOIN messages m ON m.id = r.message_id GROUP BY day, adapter ORDER BY day, adapter")


RECENT = {  # one SELECT per kind, the same columns each, so they can be UNIONed
    "rating": "SELECT 'rating' AS kind, r.created_at, r.user, m.content AS answer, "
              "CASE r.value WHEN 1 THEN 'up' ELSE 'down' END || "
              "coalesce(': ' || r.reason, '') || coalesce(' - ' || r.comment, '') AS detail, "
              "r.reason AS reason FROM ratings r JOIN messages m ON m.id = r.message_id",
    "correction": "SELECT 'correction', c.created_at, c.user, m.content, c.content, NULL "
                  "FROM corrections c JOIN messages m ON m.id = c.message_id",
    "preference": "SELECT 'preference', created_at, user, rejected, 'chosen: ' || chosen, "
                  "NULL FROM preferences WHERE source != 'correction'",
}


def recent_feedback(store: Store, kind: str = "all", reason: str = "",
                    limit: int = 50) -> list[dict]:
    """Latest ratings, corrections and preferences (kind "all" or one of RECENT), newest
    first; with `reason`, only ratings given that reason."""
    if kind != "all" and kind not in RECENT:
        raise BadInput(f"unknown feedback kind {kind!r}")
    chosen = RECENT.values() if kind == "all" else [RECENT[kind]]
    sql = " UNION ALL ".join(chosen)
    where, params = "", []
    if reason:
        where, params = "WHERE reason = ?", [reason]
    return store.query(f"SELECT * FROM ({sql}) {where} ORDER BY created_at DESC LIMIT ?",
                       [*params, limit])
