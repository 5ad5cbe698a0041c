"""What every benchmark shares: the names, the one percentile, the table of results.

`python launch.py bench gen|ttft|retrieval|train|swap|feedback|quality|all [--json]`. Each bench
returns a flat dict; a key `X` with a partner `X_baseline` becomes one table row with their
ratio.
"""

from __future__ import annotations

from contextlib import contextmanager

from chat.errors import ChatError

NAMES = ("gen", "ttft", "retrieval", "train", "swap", "feedback", "quality")


class BenchUnavailable(ChatError):
    """A benchmark whose part of the project is missing or cannot run here."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@contextmanager
def no_stop(engine):
    """Decode a fixed number of tokens: the end-of-turn token does not stop the loop."""
    saved, engine.stop_ids = engine.stop_ids, set()
    try:
        yield
    finally:
        engine.stop_ids = saved


# ---------------------------------------------------------------------------- table

# bench -> (project key, baseline key, ratio key) where names do not follow X / X_baseline
PAIRS = {"retrieval": [("qps_hnsw", "qps_exact", "speedup")]}


def _pairs(bench: str, result: dict) -> list[tuple[str, str, str]]:
    pairs = [(k, f"{k}_baseline", "ratio") for k in result if f"{k}_baseline" in result]
    return PAIRS.get(bench, []) + pairs


def table(results: dict[str, dict]) -> str:
    """Rows: bench, metric, project figure, baseline figure (same run), ratio."""
    rows = [("bench", "metric", "project", "baseline", "ratio")]
    for bench, result in results.items():
        pairs = _pairs(bench, result)
        paired = {k for pair in pairs for k in pair}
        for key, base, ratio in pairs:
            rows.append((bench, key, str(result[key]), str(result[base]),
                         str(result.get(ratio, ""))))
        for key, value in result.items():
            if key not in paired and isinstance(value, (int, float, str, type(None))):
                rows.append((bench, key, str(value), "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
