import json

import pytest

import launch
from chat.bench.cli import _lazy, run_bench
from chat.bench.common import BenchUnavailable, percentile, table
from chat.engine import c_kernels


def test_table_pairs_project_and_baseline_with_ratio():
    out = table({"gen": {"tok_s": 60.0, "tok_s_baseline": 15.0, "ratio": 4.0, "threads": 2},
                 "retrieval": {"qps_hnsw": 900.0, "qps_exact": 30.0, "speedup": 30.0,
                               "sweep": [{"ef": 10}]}})
    lines = out.splitlines()
    assert lines[0].split() == ["bench", "metric", "project", "baseline", "ratio"]
    assert ["gen", "tok_s", "60.0", "15.0", "4.0"] in [line.split() for line in lines]
    assert ["retrieval", "qps_hnsw", "900.0", "30.0", "30.0"] in [ln.split() for ln in lines]
    assert ["gen", "threads", "2"] in [line.split() for line in lines]
    assert "sweep" not in out  # nested values stay in the JSON only


def test_percentile_nearest_rank():
    values = list(range(1, 21))
    assert percentile(values, 50) == 10
    assert percentile(values, 90) == 18
    assert percentile([5.0], 90) == 5.0


def test_unknown_bench_is_a_clear_error(cfg):
    with pytest.raises(BenchUnavailable, match="unknown benchmark"):
        run_bench("nope", cfg)


def test_missing_part_is_a_one_line_error():
    with pytest.raises(BenchUnavailable, match="needs no_such_pkg.bench.run"):
        _lazy("no_such_pkg.bench", "run", "a missing part")


def test_cli_rejects_unknown_bench_name(capsys):
    with pytest.raises(SystemExit) as exc:
        launch.main(["bench", "nope"])
    assert exc.value.code == 2


def test_cli_missing_module_exits_2_with_one_line(monkeypatch, capsys):
    import chat.bench.cli as bench

    def unavailable(name, cfg):
        return bench._lazy("no_such_pkg.bench", "run", "a missing part")

    monkeypatch.setattr(bench, "run_bench", unavailable)
    assert launch.main(["bench", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: this benchmark needs") and "\n" not in err


def test_cli_feedback_bench_prints_one_json_object(capsys):
    assert launch.main(["bench", "feedback", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["rows"] >= result["writes_1"] > 0


@pytest.mark.slow
def test_gen_bench_reports_ratio_against_plain_generate(cfg):
    result = run_bench("gen", cfg)
    assert result["tok_s"] > 0 and result["tok_s_baseline"] > 0
    assert result["ratio"] == pytest.approx(result["tok_s"] / result["tok_s_baseline"], 0.02)
    # which weights the figure came from: the shipped model decodes through exact blocks
    assert result["decode_kernel"].startswith(
        "exact GGUF blocks (121 of 121" if c_kernels.problem() is None else "fp16 (block")


@pytest.mark.slow
def test_ttft_bench_uses_four_retrieved_chunks(cfg):
    result = run_bench("ttft", cfg)
    assert result["chunks"] == 4 and result["runs"] >= 20
    assert result["prompt_kernel"].startswith(
        ("int16 inputs x GGUF blocks", "bf16", "fp16", "int8", "fp32", "transformers/peft"))
    assert 0 < result["ttft_p50_ms"] <= result["ttft_p90_ms"]
    # the fifth turn carries four earlier exchanges: a longer prompt than a first question
    assert result["turn5_prompt_tokens"] > result["prompt_tokens"] + 4 * 100
    assert result["ttft_turn5_p50_ms"] > 0 and result["ttft_turn5_2users_p50_ms"] > 0


@pytest.mark.slow
def test_swap_bench_drops_no_request(cfg):
    result = run_bench("swap", cfg)
    assert result["failed"] == 0 and result["events"] == 20
    assert result["requests_ok"] > 0


@pytest.mark.slow
def test_quality_bench_prints_its_shares_as_json(capsys):
    assert launch.main(["bench", "quality", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["questions"] == 40
    for key in ("repeat_share", "cutoff_share", "grounded_share"):
        assert 0 <= result[key] <= 1 and 0 <= result[f"{key}_baseline"] <= 1
    # the goals, with the shipped defaults
    assert result["repeat_share"] <= 0.05 and result["cutoff_share"] <= 0.10
