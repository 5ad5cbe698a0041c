"""The feedback write benchmark runs and reports every figure (speed itself is not asserted)."""

from feedback.bench import WRITES_PER_WRITER, bench_feedback

KEYS = {"p50_ms_1", "p99_ms_1", "writes_per_s_1", "p50_ms_32", "p99_ms_32", "writes_per_s_32"}


def test_bench_feedback_reports_every_key_and_writes_every_row():
    result = bench_feedback()
    assert KEYS <= set(result)
    assert all(result[k] > 0 for k in KEYS)
    assert result["p50_ms_32"] <= result["p99_ms_32"]
    assert result["writes_32"] == 32 * WRITES_PER_WRITER and result["writes_1"] == WRITES_PER_WRITER
    # warm-up (4 writers) + 1 + 32 writers, each rating every message once under its own name
    assert result["rows"] == (4 + 1 + 32) * WRITES_PER_WRITER
