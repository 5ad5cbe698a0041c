"""Chat completions: OpenAI's request mapped onto ChatService.stream, and its answer as a
completion body or as server-sent events (RAG, prompt profile, adapter, rate limit and
recording as in the web app)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from itertools import chain

from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from chat.api.models import model_adapter
from chat.api.schemas import ChatMessage, ChatRequest
from chat.engine.engine import GenParams
from chat.errors import BadInput, ChatError
from chat.limits import InFlight
from chat.runtime import Runtime
from chat.service import Answer, ChatService

# ---------------------------------------------------------------------------- request -> service


def _text(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text":
            raise BadInput(f"only text content is supported, got a {part.type!r} part")
        texts.append(part.text or "")
    return "".join(texts)


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[dict]]:
    """(question, history): the last message must be the user's; system turns are dropped
    because the server's prompt profile (and its RAG framing) applies, as in the web app.
    ChatService checks each turn's length, as it does for the web app's history."""
    if messages[-1].role != "user":
        raise BadInput("the last message must have role 'user'")
    history = []
    for m in messages[:-1]:
        if m.role == "tool":
            raise BadInput("tool messages are not supported")
        if m.role in ("user", "assistant"):
            history.append({"role": m.role, "content": _text(m.content)})
    return _text(messages[-1].content), history


def gen_params(service: ChatService, req: ChatRequest) -> GenParams:
    """OpenAI's sampling options mapped onto GenParams (server defaults where absent)."""
    if req.n != 1:
        raise BadInput("n must be 1")
    if req.stop:
        raise BadInput("stop sequences are not supported")
    if req.tools:
        raise BadInput("tools are not supported")
    base = service.default_params()
    max_new = req.max_completion_tokens or req.max_tokens or base.max_new_tokens
    if max_new > service.cfg.max_new_tokens:
        raise BadInput(f"max_tokens is {max_new}; this server allows at most "
                       f"{service.cfg.max_new_tokens}")
    return GenParams(
        temperature=base.temperature if req.temperature is None else req.temperature,
        top_p=base.top_p if req.top_p is None else req.top_p,
        max_new_tokens=max_new, seed=req.seed, repetition_penalty=base.repetition_penalty,
        no_repeat_ngram=base.no_repeat_ngram)


# ---------------------------------------------------------------------------- responses


def _extras(answer: Answer) -> dict:
    return {"message_id": answer.message_id, "conversation_id": answer.conversation_id,
            "adapter_version": answer.adapter_version, "prompt_version": answer.prompt_version,
            "retriever_version": answer.retriever_version,
            "sources": [s.as_dict(300) for s in answer.sources]}


def completion_body(service: ChatService, answer: Answer, model: str) -> dict:
    usage, truncated = service.usage(answer)
    return {"id": f"chatcmpl-{answer.conversation_id}-{answer.user_message_id}",
            "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": "length" if truncated else "stop", "logprobs": None}],
            "usage": usage, **_extras(answer)}


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_events(service: ChatService, first: Answer, rest: Iterator[Answer], model: str,
               include_usage: bool) -> Iterator[str]:
    """`data: {chunk}` events for each new piece, a final chunk with our extras, `[DONE]`."""
    head = {"id": f"chatcmpl-{first.conversation_id}-{first.user_message_id}",
            "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                          "logprobs": None}], **extra})

    yield chunk({"role": "assistant", "content": ""}, adapter_version=first.adapter_version,
                conversation_id=first.conversation_id)
    answer, sent = first, 0
    try:
        for answer in chain([first], rest):
            if len(answer.text) > sent:
                yield chunk({"content": answer.text[sent:]})
                sent = len(answer.text)
    except ChatError as exc:
        yield _sse({"error": {"message": str(exc), "type": "invalid_request_error"}})
        yield "data: [DONE]\n\n"
        return
    usage, truncated = service.usage(answer)
    yield chunk({}, "length" if truncated else "stop", **_extras(answer))
    if include_usage:
        yield _sse({**head, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the client goes away, so cleanup runs now rather than at GC."""

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()


async def _guarded(events: Iterator[str], answers, cancel, inflight: InFlight):
    """Stream in a worker thread; on a client disconnect stop generating and record."""
    try:
        async for event in iterate_in_threadpool(events):
            yield event
    finally:
        cancel.set()
        answers.close()  # runs ChatService.stream's finally: the partial answer is recorded
        inflight.release()


# ---------------------------------------------------------------------------- the route's work


async def complete_chat(rt: Runtime, req: ChatRequest, user: str):
    """One completion for `user`: a JSON body, or a stream of events when `req.stream`."""
    question, history = split_messages(req.messages)
    params = gen_params(rt.service, req)
    model = req.model or rt.cfg.base_model
    cancel = threading.Event()

    def start() -> tuple[Answer, Iterator[Answer]]:  # retrieval, prompt, the first piece
        answers = rt.service.stream(question, user, history=history,
                                    conversation_id=req.conversation_id,
                                    adapter=model_adapter(rt.service, req.model),
                                    params=params, cancel=cancel)
        return next(answers), answers

    def complete() -> dict:
        first, answers = start()
        *_, answer = (first, *answers)
        return completion_body(rt.service, answer, model)

    # The slot is taken here on the event loop, before the request waits for one of
    # AnyIO's worker threads: past CHAT_MAX_QUEUE the answer is "busy" at once.
    rt.in_flight.acquire()
    if not req.stream:
        try:
            return await run_in_threadpool(complete)
        finally:
            rt.in_flight.release()
    try:
        first, answers = await run_in_threadpool(start)
    except BaseException:
        rt.in_flight.release()
        raise
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    events = sse_events(rt.service, first, answers, model, include_usage)
    return ClosingStreamingResponse(_guarded(events, answers, cancel, rt.in_flight),
                                    media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache"})
