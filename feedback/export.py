"""Feedback -> TRL datasets (DPO pairs, KTO thumbs) and a raw dump; JSONL written atomically."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from chat.errors import BadInput
from chat.prompt import PromptProfile, build_messages
from feedback.store import Store, same_answer

FORMATS = ("dpo", "kto", "raw")
DPO_KEYS = ("prompt", "chosen", "rejected")
KTO_KEYS = ("prompt", "completion", "label")


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def normalize_prompt(prompt, profile=None) -> list[dict]:
    """Messages exactly as the model saw them. A bare imported question is framed by `profile`
    (a PromptProfile or a plain system prompt) as serving would frame it; without a profile
    it becomes a lone user turn."""
    if isinstance(profile, str):
        profile = PromptProfile(system_prompt=profile)
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError:
            pass
    if isinstance(prompt, str):
        return build_messages(profile, prompt) if profile else [
            {"role": "user", "content": prompt}]
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt or []]
    if messages and messages[0]["role"] != "system" and profile:
        # framed as serving frames a conversation: system prompt, few-shot turns, then it
        messages = [{"role": "system", "content": profile.system_prompt},
                    *({"role": t["role"], "content": t["content"]} for t in profile.few_shot),
                    *messages]
    return messages


def _ends_with_question(prompt: list[dict]) -> bool:
    return bool(prompt) and prompt[-1]["role"] == "user" and bool(prompt[-1]["content"].strip())


def dpo_rows(store: Store, profile=None, ids: Iterable[int] | None = None) -> list[dict]:
    """Preference pairs in TRL's conversational DPO format, plus "id" (preference id), "user"
    and "source"; the one builder both the export and training use.

    The prompt is the message list the model saw (prompt_json), so training matches serving;
    `profile` frames bare imported questions (see normalize_prompt). Pairs whose prompt does
    not end in a question, or with chosen == rejected, are skipped (nothing to learn).
    """
    sql = "SELECT * FROM preferences"
    params: list = []
    if ids is not None:
        ids = list(ids)
        if not ids:
            return []
        sql += f" WHERE id IN ({', '.join('?' for _ in ids)})"
        params = ids
    rows = []
    for p in store.query(sql + " ORDER BY id", params):
        prompt = normalize_prompt(p["prompt_json"], profile)
        if not _ends_with_question(prompt) or same_answer(p["chosen"], p["rejected"]):
            continue
        rows.append({"id": p["id"], "user": p["user"], "prompt": prompt,
                     "chosen": _assistant(p["chosen"]), "rejected": _assistant(p["rejected"]),
                     "source": p["source"], "adapter_version": p["adapter_version"],
                     "prompt_version": p["prompt_version"]})
    return rows


def kto_rows(store: Store, profile=None) -> list[dict]:
    """Thumbs up/down in TRL's conversational KTO format, plus "id" (rating id) and "user"."""
    rows = []
    for r in store.query(
        "SELECT r.id, r.user, r.value, r.reason, m.content, m.prompt_json, m.adapter_version, "
        "m.prompt_version FROM ratings r JOIN messages m ON m.id = r.message_id "
        "WHERE m.prompt_json IS NOT NULL ORDER BY r.id"
    ):
        prompt = normalize_prompt(r["prompt_json"], profile)
        if not _ends_with_question(prompt) or not r["content"].strip():
            continue
        rows.append({"id": r["id"], "user": r["user"], "source": "rating", "prompt": prompt,
                     "completion": _assistant(r["content"]), "label": r["value"] > 0,
                     "reason": r["reason"], "adapter_version": r["adapter_version"],
                     "prompt_version": r["prompt_version"]})
    return rows


def raw_rows(store: Store) -> list[dict]:
    """Every feedback row with a "kind"; ratings and corrections carry the answer they judge."""
    rows = []
    answer = ("m.content AS answer, m.prompt_json, m.adapter_version, m.prompt_version, "
              "m.conversation_id")
    for kind, sql in (
        ("rating", f"SELECT r.*, {answer} FROM ratings r JOIN messages m ON m.id = r.message_id"),
        ("correction", f"SELECT c.*, {answer} FROM corrections c "
                       "JOIN messages m ON m.id = c.message_id"),
        ("preference", "SELECT * FROM preferences"),
        ("comparison", "SELECT * FROM comparisons"),
    ):
        for row in store.query(sql + " ORDER BY id"):
            row["prompt"] = normalize_prompt(row.pop("prompt_json"))
            rows.append({"kind": kind, **row})
    return rows


def export_rows(store: Store, fmt: str, profile=None) -> list[dict]:
    """Rows for `fmt`: dpo/kto keep only TRL's columns; raw keeps everything. Pass the active
    profile (chat.profiles.active_profile) so dpo/kto rows are the ones a run trains on."""
    if fmt == "dpo":
        return [{k: r[k] for k in DPO_KEYS} for r in dpo_rows(store, profile)]
    if fmt == "kto":
        return [{k: r[k] for k in KTO_KEYS} for r in kto_rows(store, profile)]
    if fmt == "raw":
        return raw_rows(store)
    raise BadInput(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_jsonl(rows: list[dict], out: Path | str | None) -> None:
    """JSONL to stdout, or to a file that appears complete or not at all (temp file + rename)."""
    if out is None:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
