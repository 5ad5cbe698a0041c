"""Feedback rows -> TRL datasets: DPO pairs, KTO examples; per-user caps, held-out split."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from chat.errors import NotEnoughData
from chat.sanitize import inert
from feedback.export import dpo_rows, kto_rows, normalize_prompt
from feedback.importer import IMPORT_VERSION
from training.config import DataSettings

# What makes two rows the same example, whatever their ids: DPO pairs, then KTO thumbs.
CONTENT_KEYS = ("prompt", "chosen", "rejected", "completion", "label")


@dataclass
class Split:
    train: list[dict]
    heldout: list[dict]
    dropped_by_cap: int = 0
    per_user: dict[str, int] = field(default_factory=dict)
    dropped_duplicates: int = 0

    @property
    def ids(self) -> list[int]:
        return sorted(r["id"] for r in self.train)


# The row builders live with the export, so the JSONL an admin downloads and the data a run
# trains on are the same rows; runs pass the active profile to frame bare imported questions.
__all__ = ["dpo_rows", "kto_rows", "normalize_prompt", "conversation_prompts", "split"]


def conversation_prompts(store, profile, limit: int) -> list[list[dict]]:
    """Distinct prompts from real conversations (for RL rollouts), newest first."""
    seen, out = set(), []
    for prompt_json in store.answer_prompts(limit * 4):
        prompt = normalize_prompt(prompt_json, profile)
        key = json.dumps(prompt)
        if prompt and prompt[-1]["role"] == "user" and key not in seen:
            seen.add(key)
            out.append(prompt)
    return out[:limit]


# ---------------------------------------------------------------------------- caps and split


def _rank(seed: int, row_id: int) -> str:
    # a per-row hash, so an item's side of the split does not move when new rows arrive
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


def imported(row: dict) -> bool:
    """Came from `feedback import`: imported pairs have source "import"; imported ratings and
    corrections hang on an answer whose adapter_version is the import marker."""
    return row.get("source") == "import" or row.get("adapter_version") == IMPORT_VERSION


def dedupe(rows: list[dict]) -> tuple[list[dict], int]:
    """One row per content (a file imported twice, a pair recorded twice), the earliest id
    kept: a copy on each side of the split would let the gate score training examples."""
    first: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        key = json.dumps([r.get(k) for k in CONTENT_KEYS], sort_keys=True)
        first.setdefault(key, r)
    kept = {r["id"] for r in first.values()}
    return [r for r in rows if r["id"] in kept], len(rows) - len(kept)


def cap_users(rows: list[dict], share: float, seed: int) -> tuple[list[dict], int]:
    """Keep each user's rows to at most `share` of the run (seeded sample); imports exempt:
    the cap guards against one account flooding the thumbs and comparisons users give, not
    against what an admin imported deliberately."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if not imported(r):
            by_user[r["user"]].append(r)
    if len(by_user) < 2:
        return rows, 0  # a single account has nobody to dominate
    dropped: set[int] = set()
    for user, mine in by_user.items():
        others = len(rows) - len(mine)
        limit = max(1, int(share * others / (1 - share))) if share < 1 else len(mine)
        if len(mine) > limit:
            keep = random.Random(f"{seed}:{user}").sample(mine, limit)
            dropped |= {r["id"] for r in mine} - {r["id"] for r in keep}
    return [r for r in rows if r["id"] not in dropped], len(dropped)


def split(rows: list[dict], settings: DataSettings, stratum: str) -> Split:
    """De-duplicate, cap users, then a stratified, reproducible held-out split."""
    rows, duplicates = dedupe(rows)
    rows, dropped = cap_users(rows, settings.max_user_share, settings.seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r[stratum])].append(r)
    n_held = min(settings.max_heldout, max(1, round(settings.heldout_fraction * len(rows))))
    counts = heldout_counts({key: len(group) for key, group in groups.items()}, n_held)
    train, heldout = [], []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: _rank(settings.seed, r["id"]))
        heldout += group[:counts[key]]
        train += group[counts[key]:]
    per_user: dict[str, int] = defaultdict(int)
    for r in train:
        per_user[r["user"]] += 1
    return Split(sorted(train, key=lambda r: r["id"]), heldout, dropped, dict(per_user),
                 duplicates)


def heldout_counts(sizes: dict[str, int], n_held: int) -> dict[str, int]:
    """Share n_held out over the strata in proportion to their sizes, by largest remainder,
    so the counts add up to n_held exactly (rounding each stratum on its own can fall below
    the gate's min_heldout, and then every adapter is rejected). Each stratum keeps at least
    one row to train on; a stratum of one row is never held out."""
    room = {key: n - 1 for key, n in sizes.items() if n > 1}
    total = sum(sizes[key] for key in room)
    n_held = min(n_held, sum(room.values()))
    quota = {key: n_held * sizes[key] / total for key in room}
    counts = {key: int(quota.get(key, 0)) for key in sizes}  # floors; no room: 0
    by_remainder = sorted(room, key=lambda key: (int(quota[key]) - quota[key], key))
    while sum(counts.values()) < n_held:  # ends: n_held <= the room there is
        for key in by_remainder:
            if counts[key] < room[key] and sum(counts.values()) < n_held:
                counts[key] += 1
    return counts


def require(n: int, minimum: int, what: str, hint: str) -> None:
    if n < minimum:
        raise NotEnoughData(f"only {n} {what} (at least {minimum} needed); {hint}")


def kto_weights(rows: list[dict]) -> tuple[float, float]:
    """(desirable, undesirable) weights that balance the classes, as the KTO paper suggests."""
    n_good = sum(1 for r in rows if r["label"])
    n_bad = len(rows) - n_good
    if n_good == 0 or n_bad == 0:
        raise NotEnoughData(f"KTO needs both thumbs-up and thumbs-down ratings, got {n_good} "
                            f"up and {n_bad} down; collect the other kind or use dpo")
    if n_good >= n_bad:
        return n_bad / n_good, 1.0
    return 1.0, n_good / n_bad


TEXT_KEYS = ("prompt", "chosen", "rejected", "completion")


def inert_rows(rows: list[dict], pattern) -> list[dict]:
    """Rows whose text has the tokenizer's control-token strings made inert, as Engine.encode
    does when serving: a stored question, source or answer must not open turns in training
    that it could not open when it was served."""
    return [{**r, **{k: inert_text(r[k], pattern) for k in TEXT_KEYS if k in r}} for r in rows]


def inert_text(value, pattern):
    """A string, or a list of chat messages, with inert control-token strings."""
    if isinstance(value, str):
        return inert(value, pattern)
    if isinstance(value, list):
        return [{**m, "content": inert(m["content"], pattern)}
                if isinstance(m, dict) and isinstance(m.get("content"), str) else m
                for m in value]
    return value


def trl_columns(rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
    return [{c: r[c] for c in columns} for r in rows]
