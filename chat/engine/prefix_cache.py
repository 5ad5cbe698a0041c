"""Which earlier prompt's keys/values a new prompt can start from.

Two kinds of entry: the most recent prompt of all (every chat shares the system prompt, so a
new conversation starts from it), and the latest prompt of each of a few recent conversations
(a follow-up shares everything up to its previous question, even when other people's
questions came in between). Entries are (token ids, KV cache); a cache's rows past its prompt
are still being written by that request's decoding, so readers copy only rows < len(ids).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

CONVERSATIONS = 6
# keys/values take ~46 KB per token for SmolLM2-135M but ~390 KB for a 1.7B model without
# grouped-query attention, so the number of conversations kept is capped by memory too
MAX_BYTES = 512 * 2**20


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixCache:
    def __init__(self, conversations: int = CONVERSATIONS, max_bytes: int = MAX_BYTES):
        self.conversations, self.max_bytes = conversations, max_bytes
        self._lock = threading.Lock()
        self._last: tuple[list[int], object] | None = None
        self._by_conversation: OrderedDict[object, tuple[list[int], object]] = OrderedDict()

    def last(self) -> tuple[list[int], object] | None:
        with self._lock:
            return self._last

    def best(self, ids: list[int], key=None) -> tuple[int, object | None]:
        """(tokens shared, cache) of the entry sharing the longest prefix with `ids`."""
        with self._lock:
            entries = [self._last, self._by_conversation.get(key)]
        shared, cache = 0, None
        for entry in entries:
            if entry is not None and (n := common_prefix(entry[0], ids)) > shared:
                shared, cache = n, entry[1]
        return shared, cache

    def remember(self, ids: list[int], cache, key=None) -> None:
        entry = (list(ids), cache)
        with self._lock:
            self._last = entry
            if key is not None:
                self._by_conversation[key] = entry
                self._by_conversation.move_to_end(key)
                while self._by_conversation and (
                        len(self._by_conversation) > self.conversations
                        or self._bytes() > self.max_bytes):
                    self._by_conversation.popitem(last=False)

    def _bytes(self) -> int:
        """Memory held by the distinct caches kept (called once `_last` is set)."""
        caches = {id(c): c for _, c in [self._last, *self._by_conversation.values()]}
        return sum(c.nbytes for c in caches.values())
