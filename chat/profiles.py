"""Prompt profiles: versioned system prompt + few-shot turns + source framing; one is active."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from chat.errors import BadInput, NotFound
from chat.prompt import DEFAULT_SOURCE_TEMPLATE, PromptProfile, question_of
from feedback.store import Store, dumps, utcnow

PROFILE_KEYS = {"system_prompt", "few_shot", "source_template", "note"}
MAX_PROFILE_CHARS = 20_000


def validate_profile(data: object) -> PromptProfile:
    """A PromptProfile from parsed JSON, or BadInput naming what is wrong."""
    if not isinstance(data, dict):
        raise BadInput("a profile must be a JSON object")
    unknown = set(data) - PROFILE_KEYS
    if unknown:
        raise BadInput(f"unknown profile keys: {sorted(unknown)}; allowed: {sorted(PROFILE_KEYS)}")
    system = data.get("system_prompt")
    if not isinstance(system, str) or not system.strip():
        raise BadInput("system_prompt must be a non-empty string")
    few_shot = data.get("few_shot", [])
    _check_few_shot(few_shot)
    template = data.get("source_template", DEFAULT_SOURCE_TEMPLATE)
    if not isinstance(template, str) or "{sources}" not in template:
        raise BadInput("source_template must be a string containing {sources}")
    if len(json.dumps(data, ensure_ascii=False)) > MAX_PROFILE_CHARS:  # characters, not escapes
        raise BadInput(f"the profile is larger than {MAX_PROFILE_CHARS} characters")
    return PromptProfile(system.strip(), [dict(t) for t in few_shot], template)


def _check_few_shot(turns: object) -> None:
    if not isinstance(turns, list) or len(turns) % 2:
        raise BadInput("few_shot must be a list of user/assistant turn pairs")
    for i, turn in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise BadInput(f"few_shot[{i}] must be an object with exactly role and content")
        if turn["role"] != expected:
            raise BadInput(f"few_shot[{i}] must have role {expected!r} (roles alternate)")
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            raise BadInput(f"few_shot[{i}].content must be a non-empty string")


def parse_profile(text: str, where: str = "the profile") -> tuple[PromptProfile, str | None]:
    """A profile and its note from JSON text, or BadInput naming what is wrong."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadInput(f"{where} is not valid JSON: {exc}") from None
    profile = validate_profile(data)
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise BadInput("note must be a string")
    return profile, note


def load_profile_file(path: Path | str) -> tuple[PromptProfile, str | None]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    return parse_profile(text, str(path))


class ProfileStore:
    """Profiles are rows that are never edited: a change is a new version."""

    def __init__(self, store: Store, default_system_prompt: str):
        self.store = store
        self.default_system_prompt = default_system_prompt

    def _row_to_profile(self, row: dict) -> PromptProfile:
        return PromptProfile(row["system_prompt"], json.loads(row["few_shot_json"]),
                             row["source_template"], row["version"])

    def active(self) -> PromptProfile:
        """The active profile, read per request so activation needs no restart."""
        row = self.store.one("SELECT * FROM prompt_profiles WHERE status = 'active'")
        if row is None:
            self._seed_default()
            row = self.store.one("SELECT * FROM prompt_profiles WHERE status = 'active'")
        return self._row_to_profile(row)

    def _seed_default(self) -> None:
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM prompt_profiles WHERE status = 'active'").fetchone():
                return
            self._insert(db, PromptProfile(self.default_system_prompt), "active",
                         "built-in default", "system")

    def _insert(self, db, profile: PromptProfile, status: str, note, user) -> int:
        version = db.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM prompt_profiles").fetchone()[0]
        db.execute(
            "INSERT INTO prompt_profiles (version, system_prompt, few_shot_json, "
            "source_template, status, note, created_by, created_at) VALUES (?,?,?,?,?,?,?,?)",
            (version, profile.system_prompt, dumps(profile.few_shot), profile.source_template,
             status, note, user, utcnow()))
        return version

    def add(self, profile: PromptProfile, user: str, note: str | None = None) -> int:
        """Store a new draft version; returns its number."""
        self.active()  # make sure the built-in default is version 1
        with self.store.write() as db:
            return self._insert(db, profile, "draft", note, user)

    def get(self, version: int) -> PromptProfile:
        row = self.store.one("SELECT * FROM prompt_profiles WHERE version = ?", (version,))
        if row is None:
            raise NotFound(f"no prompt profile version {version}")
        return self._row_to_profile(row)

    def list(self) -> list[dict]:
        self.active()
        return self.store.query(
            "SELECT version, status, note, created_by, created_at, system_prompt, "
            "few_shot_json FROM prompt_profiles ORDER BY version")

    def activate(self, version: int) -> None:
        """One transaction: the old active one is retired (still readable), this one active."""
        self.get(version)
        with self.store.write() as db:
            db.execute("UPDATE prompt_profiles SET status = 'retired' WHERE status = 'active'")
            db.execute("UPDATE prompt_profiles SET status = 'active' WHERE version = ?",
                       (version,))


def profile_as_json(profile: PromptProfile) -> dict:
    return asdict(profile)


def reframe(messages: list[dict], old: PromptProfile, new: PromptProfile) -> list[dict]:
    """Re-render a recorded prompt under another profile (sources and history kept)."""
    if not messages or messages[0]["role"] != "system":
        return [{"role": "system", "content": new.system_prompt}, *new.few_shot, *messages]
    system = messages[0]["content"]
    if system.startswith(old.system_prompt):
        system = new.system_prompt + system[len(old.system_prompt):]
    rest = messages[1:]
    if rest[: len(old.few_shot)] == old.few_shot:
        rest = rest[len(old.few_shot):]
    return [{"role": "system", "content": system}, *new.few_shot, *rest]


# ---------------------------------------------------------------------------- preview

FALLBACK_QUESTIONS = ["What can you help me with?", "How do I rate an answer?",
                      "Explain what a LoRA adapter is in one sentence."]


def preview_questions(store: Store, n: int = 5) -> list[str]:
    """Recent distinct questions people gave feedback on (the gate's prompts), else a few."""
    questions: list[str] = []
    for prompt_json in store.preference_prompts(200):
        prompt = json.loads(prompt_json)
        text = prompt if isinstance(prompt, str) else next(
            (question_of(m["content"]) for m in reversed(prompt) if m.get("role") == "user"),
            None)
        if text and text not in questions:
            questions.append(text)
        if len(questions) == n:
            break
    return questions or FALLBACK_QUESTIONS[:n]


def preview(service, candidate: PromptProfile, questions: list[str],
            max_new_tokens: int = 96) -> list[dict]:
    """Answers of the active and the candidate profile to the same questions, unrecorded."""
    params = replace(service.default_params(), temperature=0.0,
                     max_new_tokens=max_new_tokens)
    active = service.profile()
    return [{"question": q,
             "active": service.draft_answer(q, active, params),
             "candidate": service.draft_answer(q, candidate, params)} for q in questions]


def active_profile(store: Store, cfg) -> PromptProfile:
    """The prompt profile serving now: bare imported questions, exports and the gate use it."""
    return ProfileStore(store, cfg.system_prompt).active()
