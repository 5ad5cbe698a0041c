"""ask(): retrieve, build the prompt, stream from the active adapter, record the answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from chat.config import Config
from chat.engine.engine import BASE, Engine, GenParams
from chat.engine.pool import AdapterPool
from chat.errors import BadInput, NotFound
from chat.focus import focus_sources
from chat.limits import RateLimiter
from chat.profiles import ProfileStore
from chat.prompt import PromptProfile, Source, build_messages
from chat.sanitize import check_unicode
from feedback import sources
from feedback.checks import TITLE_CHARS
from feedback.store import Store

ANSWER_FACTOR = 4  # answers (and corrections of them) may run this many times a question's length


class Retriever(Protocol):
    def resolve_version(self) -> str | None: ...

    def search(self, query: str, k: int, min_score: float,
               version: str | None = None) -> list[Source]: ...


@dataclass
class Answer:
    conversation_id: int
    user_message_id: int
    adapter_version: str | None
    prompt_version: int | None
    sources: list[Source]
    prompt: list[dict]
    text: str = ""
    message_id: int | None = None  # set once the answer is recorded
    stopped: bool = False
    cut_off: bool = False  # ended at the length cap (max_new_tokens), not by itself
    params: dict = field(default_factory=dict)
    retriever_version: str | None = None  # None: the plain embedder

    def as_json(self) -> dict:
        return {"answer": self.text, "adapter_version": self.adapter_version,
                "prompt_version": self.prompt_version,
                "retriever_version": self.retriever_version,
                "sources": [s.as_dict(300) for s in self.sources],
                "message_id": self.message_id, "conversation_id": self.conversation_id}


class ChatService:
    """Business logic shared by the web UI, the HTTP API and the CLI."""

    def __init__(self, cfg: Config, engine: Engine, store: Store, *, retriever: Retriever,
                 adapters: AdapterPool, prompts: ProfileStore, limiter: RateLimiter):
        self.cfg = cfg
        self.engine = engine
        self.store = store
        self.retriever = retriever
        self.adapters = adapters  # the active version, and the pinned ones loaded on demand
        self.prompts = prompts  # the active prompt profile, read per request
        self.limiter = limiter  # per-user requests a minute (web app, API and CLI alike)

    def profile(self) -> PromptProfile:
        return self.prompts.active()

    def resolve_adapter(self, pinned: str | None) -> str | None:
        """The version this request is served by, fixed for its whole life."""
        return self.adapters.resolve(pinned)

    def check_text(self, text: str, what: str, factor: int = 1) -> str:
        """`text` if it is valid Unicode within `factor` times CHAT_MAX_MESSAGE_CHARS."""
        if not isinstance(text, str):
            raise BadInput(f"{what} must be text")
        check_unicode(text, what)
        limit = self.cfg.max_message_chars * factor
        if len(text) > limit:
            raise BadInput(f"{what} is too long ({len(text)} characters; the limit is {limit})")
        return text

    def check_question(self, question: str) -> str:
        question = self.check_text((question or "").strip(), "the message")
        if not question:
            raise BadInput("the message is empty")
        return question

    def check_history(self, history: list[dict] | None) -> list[dict]:
        """Earlier turns from the client (web app or API), each with a role; only the last
        CHAT_MAX_HISTORY_TURNS are kept, each held, stripped as a question is, to the limits
        of what would have been asked or answered (turns dropped are not measured)."""
        history = list(history or [])
        for i, turn in enumerate(history):
            if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
                raise BadInput(f"history turn {i} must have role 'user' or 'assistant'")
        keep = 2 * self.cfg.max_history_turns
        first = max(len(history) - keep, 0) if keep else len(history)
        turns = []
        for i, turn in enumerate(history[first:], start=first):
            role, content = turn["role"], turn.get("content")
            content = content.strip() if isinstance(content, str) else content
            factor = 1 if role == "user" else ANSWER_FACTOR
            content = self.check_text(content, f"history turn {i} ({role})", factor)
            turns.append({"role": role, "content": content})
        return turns

    def retrieve(self, question: str, version: str | None = None) -> list[Source]:
        """Sources for a question, searched with the given retriever version (an answer
        resolves it once, so a swap mid-answer does not change what it cites)."""
        return self.retriever.search(question, self.cfg.top_k, self.cfg.min_score, version)

    def resolve_retriever(self) -> str | None:
        return self.retriever.resolve_version() if self.cfg.top_k > 0 else None

    def build_prompt(self, profile: PromptProfile, question: str, history: list[dict] | None,
                     sources: list[Source], params: GenParams) -> list[dict]:
        """The messages the model sees: each source cut to its part closest to the question."""
        shown = focus_sources(question, sources, self.cfg.source_tokens,
                              self.engine.count_tokens)
        prompt = build_messages(profile, question, history, shown)
        return self.engine.fit_messages(prompt, params.max_new_tokens, len(profile.few_shot))

    def default_params(self) -> GenParams:
        return GenParams(self.cfg.temperature, self.cfg.top_p, self.cfg.max_new_tokens,
                         repetition_penalty=self.cfg.repetition_penalty,
                         no_repeat_ngram=self.cfg.no_repeat_ngram)

    def stream(
        self, question: str, user: str, history: list[dict] | None = None,
        conversation_id: int | None = None, adapter: str | None = None,
        params: GenParams | None = None, cancel: threading.Event | None = None,
        record: bool = True,
    ) -> Iterator[Answer]:
        """Yield the growing Answer after each piece; the last one has message_id set."""
        question = self.check_question(question)
        history = self.check_history(history)
        self.limiter.check(user)
        params = params or self.default_params()
        version = self.resolve_adapter(adapter) or BASE
        profile = self.profile()
        retriever_version = self.resolve_retriever()
        sources = self.retrieve(question, retriever_version)
        prompt = self.build_prompt(profile, question, history, sources, params)
        if conversation_id is None and record:
            conversation_id = self.store.create_conversation(
                user, title=" ".join(question.split())[:TITLE_CHARS])
        elif conversation_id is not None:
            self.store.conversation(conversation_id, user)
        # an unrecorded answer (a comparison, a preview) leaves no trace in the conversation
        user_msg = self.store.record_message(conversation_id, "user", question) if record else None
        answer = Answer(conversation_id, user_msg, version, profile.version, sources, prompt,
                        params=vars(params).copy(), retriever_version=retriever_version)
        try:
            for piece in self.engine.generate(prompt, params, version, cancel,
                                              conversation=conversation_id):
                answer.text += piece
                yield answer
        finally:
            answer.stopped = bool(cancel is not None and cancel.is_set())
            answer.cut_off = not answer.stopped and self._at_cap(answer)[0]
            if record:
                self._record(answer)
        yield answer

    def draft_answer(self, question: str, profile: PromptProfile, params: GenParams,
                     adapter: str | None = None) -> str:
        """An unrecorded answer under a given profile (for previews and comparisons)."""
        sources = self.retrieve(question, self.resolve_retriever())
        prompt = self.build_prompt(profile, question, None, sources, params)
        return self.engine.complete(prompt, params, self.resolve_adapter(adapter) or BASE)

    def _record(self, answer: Answer, parent_id: int | None = None,
                params: dict | None = None) -> int:
        answer.message_id = self.store.record_message(
            answer.conversation_id, "assistant", answer.text,
            parent_id=parent_id or answer.user_message_id,
            adapter_version=answer.adapter_version, prompt_version=answer.prompt_version,
            retriever_version=answer.retriever_version,
            sources=[s.as_dict() for s in answer.sources],
            params=params or {**answer.params, "stopped": answer.stopped,
                              "cut_off": answer.cut_off},
            prompt=answer.prompt)
        return answer.message_id

    def ask(self, question: str, user: str, **kwargs) -> Answer:
        *_, answer = self.stream(question, user, **kwargs)
        return answer

    # ------------------------------------------------------------------ feedback

    def usage(self, answer: Answer) -> tuple[dict, bool]:
        """Token counts, and whether the answer stopped at its max_new_tokens budget."""
        prompt_tokens = len(self.engine.encode(answer.prompt))
        at_cap, completion = self._at_cap(answer)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                 "total_tokens": prompt_tokens + completion}
        return usage, at_cap

    def _at_cap(self, answer: Answer) -> tuple[bool, int]:
        """Whether the answer's tokens reached its max_new_tokens, and how many it has."""
        completion = len(self.engine.tokenizer.encode(answer.text, add_special_tokens=False))
        return completion >= answer.params.get("max_new_tokens", 1 << 30), completion

    def rate(self, message_id: int, user: str, value: int, reason: str | None = None,
             comment: str | None = None) -> int:
        """Record a rating (web app and API); the comment is held to the message limit."""
        if comment is not None:
            self.check_text(comment, "the comment")
        self.own_answer(message_id, user)
        return self.store.record_rating(message_id, user, value, reason, comment)

    def own_answer(self, message_id: int, user: str) -> dict:
        """The assistant message `message_id` if it is in one of `user`'s conversations.
        Another user's message reads as missing (404), so ids cannot be probed."""
        try:
            msg = self.store.message(message_id)
            self.store.conversation(msg["conversation_id"], user)
        except NotFound:
            raise NotFound(f"no message {message_id} in your conversations") from None
        if msg["role"] != "assistant":
            raise BadInput(f"message {message_id} is not an assistant answer")
        return msg

    def mark_source(self, message_id: int, user: str, chunk_id: int, value: int) -> int:
        """"Helped" (1) or "not relevant" (-1) on one source of one of `user`'s answers."""
        return sources.record(self.store, user, self.own_answer(message_id, user), chunk_id,
                              value)

    def correct(self, message_id: int, user: str, content: str) -> int:
        """Record a correction (web app and API); held to the limit of an answer."""
        content = self.check_text((content or "").strip(), "the correction", ANSWER_FACTOR)
        self.own_answer(message_id, user)
        return self.store.record_correction(message_id, user, content)

    def choose(self, prompt: list[dict], answer_a: str, answer_b: str, choice: str, user: str,
               adapter_a: str | None = None, adapter_b: str | None = None,
               prompt_version: int | None = None) -> int:
        """Record a pick between two answers to one prompt (web app and API); A or B also
        becomes a preference pair."""
        return self.store.record_comparison(prompt, answer_a, answer_b, choice, user,
                                            adapter_a, adapter_b, prompt_version)

    def keep_pick(self, replaced_id: int, user: str, answer: Answer) -> int:
        """The answer picked in a comparison, stored in the place of the answer `replaced_id`
        (which stays stored): the conversation reopens showing the pick."""
        old = self.own_answer(replaced_id, user)
        picked = replace(answer, conversation_id=old["conversation_id"])
        return self._record(picked, old["parent_id"], {
            **answer.params, "stopped": answer.stopped, "cut_off": answer.cut_off,
            "replaces": replaced_id})
