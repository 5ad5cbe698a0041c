"""Fit a conversation into the context window: drop the oldest exchanges, never the system
prompt, the few-shot turns or the question."""

from __future__ import annotations

from chat.errors import BadInput


def fit_messages(engine, messages: list[dict], max_new_tokens: int,
                 keep_head: int = 0) -> list[dict]:
    """Drop the oldest history turns until the prompt fits; never the system or question.

    `keep_head` more leading messages after the system prompt (few-shot turns) are kept too.
    """
    if not messages or messages[-1]["role"] != "user":
        raise BadInput("the last message must be the user's question")
    budget = engine.max_context_tokens - max_new_tokens
    if budget <= 0:
        raise BadInput(f"max_new_tokens ({max_new_tokens}) leaves no room for the question "
                       f"in the {engine.max_context_tokens}-token context window")
    n_system = 1 if messages[0]["role"] == "system" else 0
    head = messages[: min(n_system + keep_head, len(messages) - 1)]
    history, question = messages[len(head):-1], messages[-1]
    bare = len(engine.encode(head + [question]))
    if bare > budget:
        raise BadInput(f"the question is too long for the context window ({budget} tokens)")
    if not history:
        return head + [question]
    # whole exchanges are dropped, oldest first, so that roles keep alternating
    starts = [*range(0, len(history), 2), len(history)]
    empty = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    # what the template adds around each message
    per_message = (len(engine.encode(head + empty + [question])) - bare) / 2
    i = _estimate_start(engine, history, starts, budget - bare, per_message)

    def fits(k: int) -> bool:
        return len(engine.encode(head + history[starts[k]:] + [question])) <= budget

    # the estimate is confirmed by encoding; where the template tokenizes differently,
    # step to the first start that fits (the last one, no history, always does)
    if fits(i):
        while i > 0 and fits(i - 1):
            i -= 1
    else:
        while not fits(i):
            i += 1
    return head + history[starts[i]:] + [question]

def _estimate_start(engine, history: list[dict], starts: list[int], room: int,
                    per_message: float) -> int:
    """Index into `starts` of the oldest exchange that fits in `room` more tokens.

    Each message is counted once, newest first, so a long history costs what fits plus
    one exchange (re-encoding the whole prompt after each drop was quadratic).
    """
    used = 0.0
    for i in range(len(starts) - 2, -1, -1):
        turns = history[starts[i]:starts[i + 1]]
        used += sum(engine.count_tokens([m.get("content") or "" for m in turns]))
        used += per_message * len(turns)
        if used > room:
            return i + 1
    return 0
