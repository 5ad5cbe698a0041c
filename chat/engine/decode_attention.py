"""A decode step's attention for one layer in one C call (chat/engine/kernels/attention.c).

One row a step leaves torch's ~15 calls per layer around attention (views, rope, the cache
writes, two small bmm and a softmax) costing more than their arithmetic: ~2 ms of a ~9 ms
step on a 2-core CPU. The C call rotates the row's queries and key, writes its key and value
into the cache and attends every query head over the cached positions, in fp32.
"""

from __future__ import annotations

import torch

from chat.engine import c_kernels


def problem(head_dim: int) -> str | None:
    """Why the kernel cannot serve heads of `head_dim` here (None: it can)."""
    if head_dim % 64:
        return f"decode attention kernel needs a head size that is a multiple of 64, not {head_dim}"
    return c_kernels.problem()


def decode_attention(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor, pos: int, heads: int) -> torch.Tensor:
    """The attention output [1, heads * hd] of one new row. `qkv` [1, (heads + 2 kv) hd] is
    the row's fused projection, `cos`/`sin` [hd] its rotation, `keys`/`values` the layer's
    cache [kv, capacity, hd] (contiguous fp32; the row's key and value land at `pos`)."""
    kv_heads, capacity, hd = keys.shape
    qkv = qkv.contiguous()
    tensors = (qkv, cos, sin, keys, values)
    if qkv.numel() != (heads + 2 * kv_heads) * hd or cos.numel() != hd or sin.numel() != hd or (
            values.shape != keys.shape or not 0 <= pos < capacity or heads % kv_heads) or not all(
            t.is_contiguous() and t.dtype == torch.float32 and t.device.type == "cpu"
            for t in tensors):
        raise ValueError("decode attention got tensors of the wrong shape or layout")
    out = torch.empty(1, heads * hd, dtype=torch.float32, device="cpu")
    if c_kernels.library().decode_attention(
            qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), keys.data_ptr(), values.data_ptr(),
            capacity, pos, heads, kv_heads, hd, out.data_ptr(), torch.get_num_threads()):
        raise MemoryError("no memory for a decode step's attention scores")
    return out
