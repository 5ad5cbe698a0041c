"""Split text into chunks of about `chunk_tokens` embedder tokens, with overlap, on boundaries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=\S)")


class Tokenizer(Protocol):
    def count(self, texts: list[str]) -> list[int]: ...
    def split(self, text: str, max_tokens: int) -> list[str]: ...


@dataclass
class Chunk:
    text: str
    n_tokens: int


@dataclass
class _Unit:
    text: str
    n_tokens: int
    starts_paragraph: bool


def _paragraphs(text: str, tok: Tokenizer, limit: int) -> list[list[_Unit]]:
    """Paragraphs as lists of sentences; a sentence over the limit is cut into token windows."""
    out: list[list[_Unit]] = []
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        units: list[_Unit] = []
        sentences = [s for s in SENTENCE_END.split(para) if s.strip()]
        for sent, m in zip(sentences, tok.count(sentences), strict=True):
            pieces = [sent] if m <= limit else tok.split(sent, limit)
            counts = [m] if m <= limit else tok.count(pieces)
            for piece, k in zip(pieces, counts, strict=True):
                units.append(_Unit(piece, k, not units))
        out.append(units)
    return out


def _join(units: list[_Unit]) -> str:
    out = ""
    for i, u in enumerate(units):
        out += u.text if i == 0 else ("\n\n" if u.starts_paragraph else " ") + u.text
    return out


def chunk_text(text: str, tok: Tokenizer, chunk_tokens: int = 240,
               overlap: int = 40) -> list[Chunk]:
    """Pack sentences up to chunk_tokens; prefer cutting between paragraphs; repeat ~overlap."""
    if chunk_tokens < 8:
        raise ValueError("chunk_tokens must be at least 8")
    if not 0 <= overlap < chunk_tokens:
        raise ValueError("chunk_overlap must be within [0, chunk_tokens)")
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []

    def cut(next_tokens: int) -> list[_Unit]:
        groups.append(current)
        carried = _tail(current, overlap)
        while carried and _size(carried) + next_tokens > chunk_tokens:
            carried = carried[1:]
        return carried

    for para in _paragraphs(text, tok, chunk_tokens):
        # a paragraph that does not fit starts a new chunk if this one is already half full
        if current and _size(current) + _size(para) > chunk_tokens \
                and _size(current) >= chunk_tokens // 2:
            current = cut(para[0].n_tokens)
        for unit in para:
            if current and _size(current) + unit.n_tokens > chunk_tokens:
                current = cut(unit.n_tokens)
            current.append(unit)
    if current:
        groups.append(current)
    texts = [_join(g) for g in groups]
    return [Chunk(t, n) for t, n in zip(texts, tok.count(texts), strict=True)]


def _size(units: list[_Unit]) -> int:
    return sum(u.n_tokens for u in units)


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    """The last units of a chunk that fit in `overlap` tokens (carried into the next one)."""
    tail: list[_Unit] = []
    total = 0
    for u in reversed(units):
        if total + u.n_tokens > overlap:
            break
        tail.insert(0, u)
        total += u.n_tokens
    return tail
