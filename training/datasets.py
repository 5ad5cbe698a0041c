"""Feedback rows -> TRL datasets: DPO pairs, KTO examples; per-user caps, held-out split."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from chat.errors import NotEnoughData
from feedback.export import dpo_rows, kto_rows, normalize_prompt
from training.config import DataSettings

# Rows an admin imported deliberately are not capped per user: the cap guards against one
# account flooding the thumbs and comparisons that ordinary users give.
UNCAPPED_SOURCES = {"import"}


@dataclass
class Split:
    train: list[dict]
    heldout: list[dict]
    dropped_by_cap: int = 0
    per_user: dict[str, int] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return sorted(r["id"] for r in self.train)


# The row builders live with the export, so the JSONL an admin downloads and the data a run
# trains on are the same rows; runs pass the active profile to frame bare imported questions.
__all__ = ["dpo_rows", "kto_rows", "normalize_prompt", "conversation_prompts", "split"]


def conversation_prompts(store, profile, limit: int) -> list[list[dict]]:
    """Distinct prompts from real conversations (for RL rollouts), newest first."""
    rows = store.query("SELECT prompt_json FROM messages WHERE role = 'assistant' AND "
                       "prompt_json IS NOT NULL ORDER BY id DESC LIMIT ?", (limit * 4,))
    seen, out = set(), []
    for r in rows:
        prompt = normalize_prompt(r["prompt_json"], profile)
        key = json.dumps(prompt)
        if prompt and prompt[-1]["role"] == "user" and key not in seen:
            seen.add(key)
            out.append(prompt)
    return out[:limit]


# ---------------------------------------------------------------------------- caps and split


def _rank(seed: int, row_id: int) -> str:
    # a per-row hash, so an item's side of the split does not move when new rows arrive
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


def cap_users(rows: list[dict], share: float, seed: int) -> tuple[list[dict], int]:
    """Keep each user's rows to at most `share` of the run (seeded sample); imports exempt."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("source") not in UNCAPPED_SOURCES:
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
    """Cap users, then a stratified, reproducible held-out split."""
    rows, dropped = cap_users(rows, settings.max_user_share, settings.seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r[stratum])].append(r)
    n_held = min(settings.max_heldout, max(1, round(settings.heldout_fraction * len(rows))))
    train, heldout = [], []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: _rank(settings.seed, r["id"]))
        k = round(n_held * len(group) / len(rows)) if len(group) > 1 else 0
        heldout += group[:k]
        train += group[k:]
    per_user: dict[str, int] = defaultdict(int)
    for r in train:
        per_user[r["user"]] += 1
    return Split(sorted(train, key=lambda r: r["id"]), heldout, dropped, dict(per_user))


def require(n: int, minimum: int, what: str, hint: str) -> None:
    if n < minimum:
        raise NotEnoughData(f"only {n} {what} (at least {minimum} needed); {hint}")


def kto_weights(rows: list[dict]) -> tuple[float, float]:
    """(desirable, undesirable) weights that balance the classes, as the KTO paper suggests."""
    n_good = sum(1 for r in rows if r["label"])
    n_bad = len(rows) - n_good
    if n_good == 0 or n_bad == 0:
        raise NotEnoughData("KTO needs both thumbs-up and thumbs-down ratings")
    if n_good >= n_bad:
        return n_bad / n_good, 1.0
    return 1.0, n_good / n_bad


def trl_columns(rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
    return [{c: r[c] for c in columns} for r in rows]
