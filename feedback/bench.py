"""Feedback write benchmark: p50/p99 latency and writes/s at 1 and 32 concurrent writers."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from chat.bench.common import percentile
from feedback.store import Store

WRITES_PER_WRITER = 100
MESSAGES = 100


def _setup(store: Store) -> list[int]:
    conv = store.create_conversation("bench")
    return [store.record_message(conv, "assistant", f"answer {i}", adapter_version="base",
                                 prompt=[{"role": "user", "content": f"q{i}"}])
            for i in range(MESSAGES)]


def _run(store: Store, message_ids: list[int], writers: int, tag: str) -> dict:
    """Each writer rates every message once (distinct rows); one latency sample per write."""
    latencies: list[list[float]] = [[] for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)

    def writer(w: int) -> None:
        barrier.wait()
        for i in range(WRITES_PER_WRITER):
            start = time.perf_counter()
            store.record_rating(message_ids[i % len(message_ids)], f"{tag}-{w}",
                                1 if i % 2 else -1, None if i % 2 else "too long")
            latencies[w].append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [x for lat in latencies for x in lat]
    return {"p50": statistics.median(flat), "p99": percentile(flat, 99),
            "writes_per_s": len(flat) / elapsed, "n": len(flat)}


def bench_feedback(json_out: bool = False) -> dict:
    """Measure rating writes on a fresh database file (WAL, BEGIN IMMEDIATE per write)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        ids = _setup(store)
        _run(store, ids, 4, "warmup")
        one = _run(store, ids, 1, "w1")
        many = _run(store, ids, 32, "w32")
        rows = store.counts()["ratings"]
    result = {
        "p50_ms_1": round(one["p50"], 3), "p99_ms_1": round(one["p99"], 3),
        "writes_per_s_1": round(one["writes_per_s"], 1),
        "p50_ms_32": round(many["p50"], 3), "p99_ms_32": round(many["p99"], 3),
        "writes_per_s_32": round(many["writes_per_s"], 1),
        "writes_1": one["n"], "writes_32": many["n"], "rows": rows,
    }
    if json_out:
        print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = bench_feedback(json_out=args.json)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
