"""Inline citations: each sentence of an answer marked [n] with the source it draws on, n being
that source's number in the answer's Sources list (and in the prompt, chat/prompt.py).

The prompt asks the model to cite [n]; a 135M model seldom does. So the marks are made here,
after the answer: a sentence gets the source holding the most of its content words, when that
source holds at least half of them (and three or more). The answer's stored text stays as the
model wrote it: the marks are how it is shown."""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[.!?])(?=\s|$)")
CITED = re.compile(r"\[\d{1,2}\]")
FENCE = re.compile(r"(```[\s\S]*?(?:```|$))")
WORD = re.compile(r"[a-z0-9]+")
# words too common to say where a sentence came from
COMMON = frozenset(
    "a an and are as at be by can for from has have in is it its of on or that the their "
    "them these they this to was were which with you your i we our not but also so if".split())
MIN_WORDS = 3  # content words a sentence needs before it is attributed
MIN_COVER = 0.5  # share of them one source must hold


def content_words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if w not in COMMON]


def best_source(sentence: str, vocabularies: list[set[str]]) -> int | None:
    """1-based number of the source holding most of the sentence's content words, if enough."""
    words = content_words(sentence)
    if len(words) < MIN_WORDS or not vocabularies:
        return None
    covers = [sum(w in vocab for w in words) / len(words) for vocab in vocabularies]
    best = max(range(len(covers)), key=covers.__getitem__)
    return best + 1 if covers[best] >= MIN_COVER else None


def cite(answer: str, sources: list[str], mark=lambda n: f" [{n}]") -> str:
    """`answer` with `mark(n)` before the end of each sentence drawn from source n. A sentence
    that already cites ([n], as the prompt asks) is left as written, as is code."""
    vocabularies = [set(content_words(s)) for s in sources]
    parts = FENCE.split(answer)  # odd parts are fenced code
    return "".join(part if i % 2 else _cite_prose(part, vocabularies, mark)
                   for i, part in enumerate(parts))


def _cite_prose(text: str, vocabularies: list[set[str]], mark) -> str:
    out = []
    for piece in SENTENCE_END.split(text):
        number = None if CITED.search(piece) else best_source(piece, vocabularies)
        out.append(piece if number is None else _marked(piece, mark(number)))
    return "".join(out)


def _marked(sentence: str, mark: str) -> str:
    """The mark goes before the sentence's closing punctuation: "... honey [2]."."""
    body = sentence.rstrip()
    tail = sentence[len(body):]
    if body and body[-1] in ".!?":
        return f"{body[:-1]}{mark}{body[-1]}{tail}"
    return f"{body}{mark}{tail}"
