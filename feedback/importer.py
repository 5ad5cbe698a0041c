"""Import feedback from JSONL: all lines are validated first, then written in ONE transaction."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from chat.errors import BadInput
from chat.prompt import question_of
from chat.sanitize import check_unicode
from feedback import sources
from feedback.store import RATING_REASONS, Rows, Store, check_pair, dumps, same_answer

IMPORT_VERSION = "import"  # adapter_version of messages that came from a file, not a model
ROLES = ("system", "user", "assistant")
MAX_IMPORT_BYTES = 200 * 1024 * 1024


# ---------------------------------------------------------------------------- validation


def _text(line: dict, key: str, required: bool = True) -> str | None:
    value = line.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f'"{key}" must be a non-empty string')
    return check_unicode(value, f'"{key}"')


def prompt_messages(prompt) -> list[dict]:
    """A prompt as chat messages: a string is one user turn; a list must end with a user turn."""
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": check_unicode(prompt, '"prompt"')}]
    if not isinstance(prompt, list) or not prompt:
        raise BadInput('"prompt" must be a non-empty string or a list of messages')
    for m in prompt:
        if (not isinstance(m, dict) or m.get("role") not in ROLES
                or not isinstance(m.get("content"), str)):
            raise BadInput('each prompt message needs "role" (system|user|assistant) and '
                           'a string "content"')
    if prompt[-1]["role"] != "user" or not prompt[-1]["content"].strip():
        raise BadInput("the prompt must end with a non-empty user message")
    return [{"role": m["role"], "content": check_unicode(m["content"], '"prompt"')}
            for m in prompt]


def validate_line(line) -> dict:
    """One parsed JSONL object -> a normalized record; BadInput says what is wrong."""
    if not isinstance(line, dict):
        raise BadInput("each line must be a JSON object")
    kind = line.get("type")
    if kind not in ("preference", "rating", "correction", "source"):
        raise BadInput('"type" must be "preference", "rating", "correction" or "source"')
    if kind == "source":  # a mark on a chunk for a query: no prompt, no answer
        return {"type": kind, "query": _text(line, "query"), "user": _text(line, "user"),
                "chunk_id": sources.check_chunk_id(line.get("chunk_id")),
                "value": sources.check_value(line.get("value"))}
    rec = {"type": kind, "prompt": prompt_messages(line.get("prompt")),
           "user": _text(line, "user")}
    if kind == "preference":
        rec.update(chosen=_text(line, "chosen"), rejected=_text(line, "rejected"))
        check_pair(rec["chosen"], rec["rejected"])
    elif kind == "rating":
        value = line.get("value")
        if isinstance(value, bool) or value not in (1, -1):
            raise BadInput('"value" must be 1 or -1')
        reason = line.get("reason")
        if reason is not None and (not isinstance(reason, str) or reason not in RATING_REASONS):
            raise BadInput(f'unknown "reason" {reason!r}; choose one of {sorted(RATING_REASONS)}')
        rec.update(completion=_text(line, "completion"), value=value, reason=reason,
                   comment=_text(line, "comment", required=False))
    else:
        rec.update(original=_text(line, "original"), corrected=_text(line, "corrected"))
        if same_answer(rec["original"], rec["corrected"]):
            raise BadInput('"corrected" is the same as "original"')
    return rec


def parse_file(path: Path | str) -> list[dict]:
    """Read and validate every line; the first bad line raises BadInput with its number."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise BadInput(f"{path} is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    records = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:  # utf-8-sig: a byte-order mark (Windows editors) on line 1 is not JSON
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
                if not text:
                    continue
                records.append(validate_line(json.loads(text)))
            except UnicodeDecodeError:
                raise BadInput(f"{path}, line {number}: not valid UTF-8") from None
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise BadInput(f"{path}, line {number}: nested too deeply") from None
            except BadInput as exc:
                raise BadInput(f"{path}, line {number}: {exc}") from None
    if not records:
        raise BadInput(f"{path}: no feedback lines")
    return records


# ---------------------------------------------------------------------------- writing


def _answer(rows: Rows, rec: dict, content: str) -> int:
    """A conversation holding the prompt turns and the imported answer; returns its message id."""
    prompt = rec["prompt"]
    title = next((question_of(m["content"]) for m in reversed(prompt) if m["role"] == "user"),
                 "")[:80]
    conv = rows.conversation(rec["user"], title)
    parent = None
    for m in prompt:
        if m["role"] == "system":
            continue
        # earlier answers of an imported conversation carry the import marker too: no model
        # of ours wrote them, so stats must not count them as the base model's
        parent = rows.message(
            conv, m["role"],
            question_of(m["content"]) if m["role"] == "user" else m["content"],
            parent_id=parent,
            adapter_version=IMPORT_VERSION if m["role"] == "assistant" else None)
    return rows.message(conv, "assistant", content, parent_id=parent,
                        adapter_version=IMPORT_VERSION, prompt=prompt)


def _write(rows: Rows, rec: dict) -> None:
    if rec["type"] == "source":
        sources.add(rows.db, rec["user"], rec["query"], rec["chunk_id"], rec["value"],
                    now=rows.now)
        return
    user, prompt_json = rec["user"], dumps(rec["prompt"])
    if rec["type"] == "preference":
        rows.preference(prompt_json, rec["chosen"], rec["rejected"], "import", user,
                        adapter_version=IMPORT_VERSION)
    elif rec["type"] == "rating":
        mid = _answer(rows, rec, rec["completion"])
        rows.rating(mid, user, rec["value"], rec["reason"], rec["comment"])
    else:
        mid = _answer(rows, rec, rec["original"])
        rows.correction(mid, user, rec["corrected"], original=rec["original"],
                        prompt_json=prompt_json, adapter_version=IMPORT_VERSION)


def import_file(store: Store, path: Path | str) -> dict[str, int]:
    """Import a JSONL file all or nothing; returns how many lines of each type were imported."""
    records = parse_file(path)
    sources.check_chunks_exist(store, [r["chunk_id"] for r in records if r["type"] == "source"])
    with store.batch() as rows:  # one transaction: a failure on any line stores no line
        for rec in records:
            _write(rows, rec)
    return dict(Counter(rec["type"] for rec in records))
