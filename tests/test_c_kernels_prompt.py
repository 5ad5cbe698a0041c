"""The int16 prompt kernel over the model's GGUF blocks: only the inputs are rounded."""

from __future__ import annotations

import pytest
import torch

from chat.engine import c_kernels
from chat.engine.c_kernels import find_blocks
from chat.engine.fastpath import FastModel
from tests import test_c_kernels as shared
from tests.test_c_kernels import _engine, needs_prompt_kernel, q4_1, q8_0

grid_model = shared.grid_model  # the shared fixture, bound here

# ---------------------------------------------------------------------------- prompts


def _q_times_d(weight: torch.Tensor, blocks) -> tuple[torch.Tensor, torch.Tensor]:
    """(q * d [out, in/32, 32], m [out, in/32]) of the grid weight `weight`, in float64."""
    m = blocks.m.double() if blocks.m is not None else torch.zeros_like(blocks.d.double())
    return weight.double().view(weight.shape[0], -1, 32) - m[..., None], m


def _as_the_prompt_kernel_rounds(x: torch.Tensor, weight: torch.Tensor, blocks) -> torch.Tensor:
    """float64 x W^T with each block of 32 of x rounded as the kernel rounds it (in fp32, to
    int16 against the block's largest |x|) and m times the block's exact sum of x."""
    xb = x.view(x.shape[0], -1, 32)
    top = xb.abs().amax(-1, keepdim=True)
    xq = torch.round(xb * (torch.full_like(top, 32767.0) / top)).double()  # as C divides
    scale = (top / 32767.0).double()
    steps, m = _q_times_d(weight, blocks)
    return (torch.einsum("rgk,ngk->rn", xq * scale, steps)
            + torch.einsum("rg,ng->rn", xb.double().sum(-1), m))


def _int16_bound(x: torch.Tensor, weight: torch.Tensor, blocks) -> torch.Tensor:
    """|error| bound of the prompt kernel's products [rows, out] for inputs x (float64):
    half a step of each block's int16 scale times that block's sum of |q d|."""
    half_step = x.view(x.shape[0], -1, 32).abs().amax(-1) / 32767 / 2
    return half_step @ _q_times_d(weight, blocks)[0].abs().sum(-1).T


@needs_prompt_kernel
@pytest.mark.parametrize("kind", ["q4_1", "q8_0"])
def test_prompt_kernel_rounds_only_the_inputs_and_only_to_int16(kind):
    torch.manual_seed(2)
    weight = (q4_1 if kind == "q4_1" else q8_0)(torch.randn(40, 96) * 0.1)  # a part panel
    blocks = find_blocks(weight)
    x = torch.randn(13, 96)  # two tiles of 6 rows and one row
    x[:, 5] *= 50  # an outlier channel, as hidden states have: its block is scaled for it
    residual = torch.randn(13, 40)
    got = blocks.prompt(x, into=residual.clone()).double()
    assert torch.allclose(got, residual.double() + _as_the_prompt_kernel_rounds(x, weight, blocks),
                          rtol=1e-6, atol=1e-5)  # fp32 sums: ~4e-6 here
    # |error| <= half a step of each block's int16 scale times sum |q d|, and above zero
    exact = residual.double() + x.double() @ weight.double().T
    assert ((got - exact).abs() <= _int16_bound(x.double(), weight, blocks) + 1e-6).all()
    assert (got - exact).abs().max() > 0


@needs_prompt_kernel
def test_prompt_kernel_with_norm_lora_and_residual_stays_within_int16_rounding():
    torch.manual_seed(4)
    weight = q4_1(torch.randn(72, 64) * 0.1)
    blocks = find_blocks(weight)
    x, norm, residual = torch.randn(8, 64) * 3, torch.rand(64) + 0.5, torch.randn(8, 72)
    a, b = torch.randn(5, 64) * 0.1, torch.randn(5, 72) * 0.1
    got = blocks.prompt(x, norm, 1e-5, (a, b), into=residual.clone()).double()
    xd = x.double()
    xn = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.double()
    want = residual.double() + xn @ weight.double().T + (xn @ a.double().T) @ b.double()
    assert ((got - want).abs() <= _int16_bound(xn, weight, blocks) + 1e-5).all()
    assert (got - want).abs().max() > 1e-7  # the inputs were rounded: not fp32's products


@needs_prompt_kernel
def test_prompt_kernel_gives_a_row_the_same_numbers_whatever_rows_come_with_it():
    # a prompt whose prefix came from the cache must get the numbers of one computed whole
    torch.manual_seed(3)
    blocks = find_blocks(q4_1(torch.randn(64, 64)))
    x = torch.randn(9, 64)
    whole = blocks.prompt(x)
    assert torch.equal(whole[4:], blocks.prompt(x[4:]))
    assert torch.equal(whole[8:], blocks.prompt(x[8:]))


def test_prompt_kernel_needs_vnni(monkeypatch):
    monkeypatch.setattr(c_kernels, "cpu_flags", lambda: {"avx512f"})
    assert "avx512_vnni" in c_kernels.prompt_problem()


@needs_prompt_kernel
def test_prompts_read_the_blocks_unless_turned_off(grid_model, monkeypatch):
    from chat.engine import fast_linear
    # whatever this CPU's timed bf16 check says: the blocks come first, else fp32 here
    monkeypatch.setattr(fast_linear, "cpu_has_fast_bf16", lambda: True)
    on = _engine(grid_model, "fp16", prompt_blocks=True).prepare("a")
    monkeypatch.setattr(fast_linear, "cpu_has_fast_bf16", lambda: False)
    off = _engine(grid_model, "fp16").prepare("a")
    assert on.kernels["prompts"] == "int16 inputs x GGUF blocks + LoRA (8 of 8 linears)"
    assert off.kernels["prompts"] == (
        "fp32 base (int16 blocks: turned off) + LoRA (8 of 8 linears)")
    fp32 = _engine(grid_model, "fp32", prompt_blocks=True).prepare("a")
    assert "fp32 base (int16 blocks: fp32 mode" in fp32.kernels["prompts"]
    ids = list(range(5, 60))
    near, exact = on.prefill(ids, 64)[1], off.prefill(ids, 64)[1]
    assert not torch.equal(near, exact)
    assert torch.allclose(near, exact, atol=1e-2 * exact.abs().max())


@needs_prompt_kernel
def test_real_model_prompts_through_int16_blocks_stay_near_fp32(real_engine):
    fast = FastModel(real_engine.model, None, "fp16")
    assert fast.kernels["prompts"].startswith("int16 inputs x GGUF blocks"), fast.kernels
    ids = real_engine.encode([{"role": "user", "content": "How does a steam engine work? "
                               "Explain the boiler, the pistons and the wheels."}])
    logits = fast.prefill(ids, len(ids) + 1)[1]
    with torch.inference_mode():
        ref = real_engine.model(input_ids=torch.tensor([ids])).logits[0, -1]
    # measured 5e-3 on 380-token prompts (tools/agreement.py); fp32 prompts give 4e-5
    assert (logits - ref).abs().max() < 2e-2
    assert logits.argmax() == ref.argmax()
