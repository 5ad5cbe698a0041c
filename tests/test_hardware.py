import pytest

from chat.engine import hardware


@pytest.fixture(autouse=True)
def fresh_decision():
    hardware.cpu_has_fast_bf16.cache_clear()
    yield
    hardware.cpu_has_fast_bf16.cache_clear()


def test_no_native_bf16_flag_means_no_bf16_and_no_timing(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "fma", "f16c"})
    monkeypatch.setattr(hardware, "bf16_matmul_speedup",
                        lambda: pytest.fail("timed a GEMM on a CPU without native bf16"))
    assert hardware.cpu_has_fast_bf16() is False


@pytest.mark.parametrize(("speedup", "expected"), [(2.0, True), (1.05, False), (0.55, False)])
def test_the_flag_alone_is_not_enough_the_timing_decides(monkeypatch, speedup, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(hardware, "bf16_matmul_speedup", lambda: speedup)
    assert hardware.cpu_has_fast_bf16() is expected


def test_speedup_is_a_real_timing_on_this_cpu():
    speedup = hardware.bf16_matmul_speedup(rows=32, inner=64, out=64)
    assert 0.01 < speedup < 100


def test_cpu_flags_reads_this_machines_cpuinfo():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    if "\nflags" not in text:
        pytest.skip("this CPU lists no x86 flags")
    flags = hardware.cpu_flags()
    assert "fpu" in flags and all(" " not in f for f in flags)
