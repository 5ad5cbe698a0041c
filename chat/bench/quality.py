"""`bench quality`: do answers loop, run into the length cap, keep to their sources?

A fixed set of questions (the shipped knowledge base's regression questions and general ones
the knowledge base does not cover) is answered through the serving path twice in one run:
with the server's loop control (Config: repetition_penalty, no_repeat_ngram) and without it
(the baseline). Per side:
- `repeat_share`: answers holding a word 8-gram twice (a sentence said again);
- `cutoff_share`: answers that stopped at the length cap (max_new_tokens) unfinished;
- `grounded_share`: of the distinct words of each answer that had sources, the share found in
  them (distinct: an answer that loops on a sentence of its source is not the more grounded
  for it);
- `mean_words`: the answers' mean length in words, to see what a setting costs in content."""

from __future__ import annotations

import tempfile
from dataclasses import replace as replace_params
from pathlib import Path

from chat.citations import WORD  # the words citations match sources by
from chat.config import replace
from chat.runtime import build_runtime
from retrieval.examples import regression_set

GENERAL = [
    "Why is the sky blue?", "How do vaccines work?", "What is a black hole?",
    "How does a refrigerator keep food cold?", "Why do leaves change colour in autumn?",
    "What is inflation?", "How do airplanes stay in the air?", "What causes earthquakes?",
    "Write a short poem about the sea.", "How do I make a cup of tea?",
    "What is the difference between weather and climate?", "Explain recursion simply.",
    "What are the planets of the solar system?", "How does the internet work?",
    "Give me three tips for sleeping better.", "What is photosynthesis?",
    "Why do we have time zones?", "How is paper made?", "What is machine learning?",
    "How do bees make honey?",
]
N_GRAM = 8


def questions(n_knowledge: int = 20) -> list[str]:
    """The bench's fixed questions: the first shipped regression questions, then GENERAL."""
    return [row["query"] for row in regression_set()[:n_knowledge]] + GENERAL


def repeats(text: str, n: int = N_GRAM) -> bool:
    """Whether some word n-gram occurs twice in `text`."""
    words = WORD.findall(text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def grounded_words(text: str, sources: list[str]) -> tuple[int, int]:
    """(distinct answer words found in the sources, distinct answer words)."""
    words = set(WORD.findall(text.lower()))
    known = set(WORD.findall(" ".join(sources).lower()))
    return len(words & known), len(words)


def answer_quality(service, asked: list[str], params) -> dict:
    """The three shares over `asked`, answered unrecorded with `params`."""
    looped = cut = found = total = words = 0
    for question in asked:
        answer = service.ask(question, "bench", params=params, record=False)
        looped += repeats(answer.text)
        words += len(WORD.findall(answer.text.lower()))
        cut += answer.cut_off  # set by the stream: no second tokenization
        if answer.sources:
            hit, n = grounded_words(answer.text, [s.text for s in answer.sources])
            found, total = found + hit, total + n
    n = max(1, len(asked))
    return {"repeat_share": round(looped / n, 3), "cutoff_share": round(cut / n, 3),
            "grounded_share": round(found / total, 3) if total else None,
            "mean_words": round(words / n, 1)}


def bench_quality(cfg) -> dict:
    """Loop control on (the server's settings) and off, on the same questions and model."""
    asked = questions()
    with tempfile.TemporaryDirectory() as folder:
        cfg = replace(cfg, data_dir=Path(folder) / "data", rate_limit_per_minute=0)
        service = build_runtime(cfg).service  # the shipped knowledge base, ingested
        served = service.default_params()
        project = answer_quality(service, asked, served)
        off = replace_params(served, repetition_penalty=1.0, no_repeat_ngram=0)
        baseline = answer_quality(service, asked, off)
    return {"questions": len(asked), **project,
            **{f"{k}_baseline": v for k, v in baseline.items()},
            "repetition_penalty": served.repetition_penalty,
            "no_repeat_ngram": served.no_repeat_ngram, "max_new_tokens": served.max_new_tokens}
