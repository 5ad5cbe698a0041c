"""Fit retrieved chunks to a prompt budget: keep each chunk's sentences closest to the question.

Prefill time grows with every prompt token (on 2 cores, ~1 s for four whole 240-token chunks),
and a 135M model reads a short, on-topic passage better than a long one. So each source goes
into the prompt as at most `budget` model tokens: its sentences sharing the most words with the
question, in their original order, with "…" where text was left out. The Sources panel and the
recorded sources keep the whole chunk; the recorded prompt holds what the model really saw.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from chat.prompt import Source
from retrieval.chunking import SENTENCE_END

GAP = " … "
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "the a an and or of to in on for is are was were be been do does did how what which who "
    "whom why when where can could should would will with from by at as it its this that these "
    "those i you we they he she my your our their me us them not no yes if then than there "
    "about into over under also any some all more most such only just so very".split())


def terms(text: str) -> set[str]:
    """Content words, cut to a 6-letter stem so 'refunds' meets 'refund'."""
    return {w[:6] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def focus_text(question: str, text: str, budget: int,
               count: Callable[[list[str]], list[int]]) -> str:
    """`text` cut to at most ~`budget` tokens of its sentences most relevant to `question`."""
    sentences = [s for s in SENTENCE_END.split(text.strip()) if s.strip()]
    sizes = count(sentences)
    if sum(sizes) <= budget:
        return text.strip()
    wanted = terms(question)
    # most shared terms first; ties go to the earlier sentence (chunks open on their topic)
    order = sorted(range(len(sentences)),
                   key=lambda i: (-len(terms(sentences[i]) & wanted), i))
    chosen: list[int] = []
    left = budget
    for i in order:
        if sizes[i] <= left:
            chosen.append(i)
            left -= sizes[i]
    if not chosen:  # even the best sentence is over budget: keep its opening
        return _opening(sentences[order[0]], budget, count) + GAP.rstrip()
    chosen.sort()
    out = ""
    for pos, i in enumerate(chosen):
        if pos == 0:
            out = ("" if i == 0 else GAP.lstrip()) + sentences[i]
        else:
            out += (" " if i == chosen[pos - 1] + 1 else GAP) + sentences[i]
    return out + ("" if chosen[-1] == len(sentences) - 1 else GAP.rstrip())


def _opening(text: str, budget: int, count: Callable[[list[str]], list[int]]) -> str:
    """The longest opening of `text` within `budget` tokens, found by characters (text without
    spaces, such as Chinese or Japanese, has no words to cut at), ending on a word where the
    text has them. About log2(len(text)) token counts."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count([text[:mid]])[0] <= budget:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:max(lo, 1)]
    space = cut.rfind(" ")
    return cut[:space] if lo < len(text) and space > len(cut) // 2 else cut


def focus_sources(question: str, sources: list[Source], budget: int,
                  count: Callable[[list[str]], list[int]]) -> list[Source]:
    """Sources as they go into the prompt; budget <= 0 keeps whole chunks."""
    if budget <= 0:
        return list(sources)
    return [replace(s, text=focus_text(question, s.text, budget, count)) for s in sources]
