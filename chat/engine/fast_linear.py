"""The linear layers of the fast path: one fused matrix of a served version, two kernels.

Prompts (prefill, compute-bound) and decode steps (one row, memory-bound) want different
kernels, so each `Linear` keeps what each needs. Where the base weight lies exactly on a GGUF
block grid (chat/engine/c_kernels.py), decode steps read the base blocks, shared by every version,
with the version's LoRA added beside them in low rank, and prompts read the same blocks with
their inputs rounded to int16 (AVX512-VNNI), or the model's own fp32 weights, plus the same
LoRA (or a merged bf16/int8 copy where the mode asks for one). Elsewhere both read a copy of
the merged weight stored as the mode says (fp16 packed for fbgemm, bf16, int8 or fp32).

The choice follows the call, not its row count, and a row's product does not depend on the
rows computed with it, so a prompt whose prefix came from the cache goes through the same
kernels as one computed whole. With int16 inputs the numbers are not quite the same, though:
attention over fewer queries differs by ~1e-7, which can move an input across an int16
rounding step; the logits then differ by up to ~7e-3 (fp32 prompts: ~2e-5), answers alike.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chat.engine import c_kernels
from chat.engine.hardware import cpu_has_fast_bf16

# first base Linear of a stack -> its _Base, shared by every version built over that base
_BASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Unsupported(Exception):
    """This model or adapter cannot be served by the fast path (the engine falls back)."""


@dataclass(frozen=True)
class Norm:
    """An RMS norm (llama's): x * rsqrt(mean(x^2) + eps) * weight, in fp32."""

    weight: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Linear:
    """x fp32 [T, in] -> fp32 [T, out]. `prompt` marks a prefill call; `norm` is applied to x
    first; with `into`, the result is added to it in place (the residual stream). Where
    `blocks` is given decode steps read it, and so do prompts where `prompt_blocks` says so
    or there is no `prompts`."""

    def __init__(self, prompts, decode=None, blocks: c_kernels.Blocks | None = None,
                 lora: tuple[torch.Tensor, torch.Tensor] | None = None,
                 base_prompts: bool = False, prompt_blocks: bool = False):
        self.prompts, self.decode, self.blocks, self.lora = prompts, decode, blocks, lora
        # `prompts` reads the base, not a merged copy: the LoRA is added to its output too
        self.base_prompts, self.prompt_blocks = base_prompts, prompt_blocks

    def __call__(self, x: torch.Tensor, prompt: bool = False, norm: Norm | None = None,
                 into: torch.Tensor | None = None) -> torch.Tensor:
        if self.blocks is not None and (not prompt or self.prompts is None or
                                        self.prompt_blocks):
            # norm, product, LoRA and residual in one call
            kernel = self.blocks.prompt if prompt and self.prompt_blocks else self.blocks
            return kernel(x, None if norm is None else norm.weight,
                          0.0 if norm is None else norm.eps, self.lora, into)
        if norm is not None:
            x = norm(x)
        y = self.prompts(x) if prompt or self.decode is None else self.decode(x)
        if prompt and self.base_prompts and self.lora is not None:
            y = torch.addmm(y, F.linear(x, self.lora[0]), self.lora[1])
        return y if into is None else into.add_(y)


def prompt_kernel(mode: str) -> str:
    """The weights prompts run through in `mode`: fp16 mode keeps a bf16 prompt copy only
    where this CPU measured bf16 faster than fp32 (chat/engine/hardware.py)."""
    return "bf16" if mode == "fp16" and cpu_has_fast_bf16() else mode


def make_linear(weight: torch.Tensor, mode: str, prefill: bool = True,
                blocks: c_kernels.Blocks | None = None, lora=None) -> Linear:
    """A `Linear` over `weight` (the version's merged weight) stored as `mode`. With `prefill`
    False (the LM head, which only sees the last position) no prompt copy is kept. `blocks`
    (the base weight's exact blocks) and `lora` (the version's low-rank change to it), where
    given, serve the decode steps, and `weight` is kept for prompts only."""
    weight = weight.detach().float().contiguous()
    if mode == "fp32":
        return Linear(lambda x: F.linear(x, weight), blocks=blocks, lora=lora)
    if mode == "bf16":
        wb = weight.to(torch.bfloat16)
        return Linear(lambda x: F.linear(x.to(torch.bfloat16), wb).float(), blocks=blocks,
                      lora=lora)
    if mode == "fp16":
        return _fp16_linear(weight, prefill, blocks, lora)
    # int8 weight-only, one symmetric scale per output channel; activations stay bf16, so
    # only the weights are rounded (the kernel is aten's, the one gpt-fast uses on CPU).
    scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    scale = scale.to(torch.bfloat16)
    mm = torch.ops.aten._weight_int8pack_mm
    return Linear(lambda x: mm(x.to(torch.bfloat16), q, scale).float(), blocks=blocks,
                  lora=lora)


def _fp16_linear(weight: torch.Tensor, prefill: bool, blocks, lora) -> Linear:
    # Decode (one row) is memory-bound: fbgemm's fp16 GEMM reads half the bytes of fp32.
    # Prefill is compute-bound, where fbgemm fp16 is no faster than fp32, but oneDNN's bf16
    # GEMM (AVX512-BF16) runs ~2x fp32 on some CPUs: there prompts go through a bf16 copy.
    fp16 = None
    if blocks is None:  # else decode steps read the blocks
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        fp16 = lambda x: torch.ops.quantized.linear_dynamic_fp16(x, packed)  # noqa: E731
    if prefill and prompt_kernel("fp16") == "bf16":
        wide = weight.to(torch.bfloat16)
        return Linear(lambda x: F.linear(x.to(torch.bfloat16), wide).float(), decode=fp16,
                      blocks=blocks, lora=lora)
    return Linear(fp16, blocks=blocks, lora=lora)


# ---------------------------------------------------------------------------- LoRA


def _plain_lora(module, adapter: str | None) -> bool:
    """Whether `adapter` changes this module's weight; Unsupported unless it is a plain LoRA,
    whose change is exactly peft's delta (B A) * scaling and can be merged or added beside."""
    if module.merged_adapters:
        raise Unsupported("an adapter is merged into the base weights")
    if adapter is None or adapter not in module.lora_A:
        return False
    if getattr(module, "use_dora", {}).get(adapter) or getattr(module, "lora_variant", {}).get(
            adapter) is not None:
        raise Unsupported(f"adapter {adapter} uses a LoRA variant (DoRA...) that cannot merge")
    return True


def merged_weight(module, adapter: str | None, merged: set[int]) -> torch.Tensor:
    """The module's weight with `adapter`'s LoRA delta added (peft's own delta formula)."""
    from peft.tuners.lora import LoraLayer

    if not isinstance(module, LoraLayer):
        return module.weight.detach()
    base = module.get_base_layer().weight.detach()
    if not _plain_lora(module, adapter):
        return base
    merged.add(id(module))
    # in fp32 whatever the served dtype: added in bf16 (a GPU's), 30% of the LoRA's change (L2)
    # was rounded away, and fp32 copies gave peft's greedy answers 5 times in 6 instead of 6
    return base.float() + module.get_delta_weight(adapter).float()


# ---------------------------------------------------------------------------- base blocks


def _base_linear(module):
    from peft.tuners.lora import LoraLayer

    return module.get_base_layer() if isinstance(module, LoraLayer) else module


@dataclass
class _Base:
    """One stack of base weights, shared by every version built over it."""

    stamp: tuple  # (data_ptr, version) of each weight when first seen
    weights: list[torch.Tensor]
    stacked: torch.Tensor | None = None  # fp32 [out, in], kept only where prompts read it
    blocks: c_kernels.Blocks | None = None
    searched: bool = False  # whether `blocks` was looked for

    def stack(self) -> torch.Tensor:
        if self.stacked is not None:
            return self.stacked
        return self.weights[0] if len(self.weights) == 1 else torch.cat(self.weights).float()


def _base(modules) -> _Base:
    weights = [_base_linear(m).weight.detach() for m in modules]
    stamp = tuple((w.data_ptr(), w._version) for w in weights)
    owner = _base_linear(modules[0])
    base = _BASES.get(owner)
    if base is None or base.stamp != stamp:
        base = _BASES[owner] = _Base(stamp, weights)
    return base


def base_blocks(modules) -> c_kernels.Blocks | None:
    """The exact GGUF blocks of the modules' base weights stacked (None: not on a grid)."""
    base = _base(modules)
    if not base.searched:
        base.blocks, base.searched = c_kernels.find_blocks(base.stack()), True
    return base.blocks


def base_product(modules):
    """x -> x W^T over the modules' base weights stacked in fp32. A stack of several is one
    copy, shared by every version: one matmul into one output instead of a matmul each and a
    concatenation saved 15 ms of a 352 ms prompt of 310 new tokens (AVX-512 with VNNI, 2 cores)."""
    base = _base(modules)
    base.stacked = stacked = base.stack()
    return lambda x: F.linear(x, stacked)


def lora_factors(modules, adapter: str | None, merged: set[int]):
    """(a [r, in], b [r, out]) with x -> (x a^T) b the adapter's change to the stacked
    modules' output (None: no change); raises Unsupported for anything but plain LoRA.
    Modules with a change join `merged`."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    parts, offset = [], 0
    for module in modules:
        rows = _base_linear(module).weight.shape[0]
        if isinstance(module, LoraLayer) and _plain_lora(module, adapter):
            lora_b = module.lora_B[adapter]
            if type(module) is not LoraLinear or module.fan_in_fan_out or lora_b.bias is not None:
                raise Unsupported(f"adapter {adapter} is not a plain LoRA on {type(module)}")
            merged.add(id(module))
            parts.append((module.lora_A[adapter].weight.detach().float(),
                          lora_b.weight.detach().float() * module.scaling[adapter], offset))
        offset += rows
    if not parts:
        return None
    a = torch.cat([part[0] for part in parts]).contiguous()
    b = torch.zeros(a.shape[0], offset)
    rank = 0
    for lora_a, lora_b, start in parts:
        b[rank:rank + lora_a.shape[0], start:start + lora_b.shape[0]] = lora_b.T
        rank += lora_a.shape[0]
    return a, b
