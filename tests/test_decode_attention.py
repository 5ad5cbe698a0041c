"""A decode step's attention in one C call (chat/engine/decode_attention.py) against torch's."""
import math

import pytest
import torch

from chat.engine import c_kernels
from chat.engine.decode_attention import decode_attention, problem

pytestmark = pytest.mark.skipif(c_kernels.problem() is not None,
                                reason=f"C kernels: {c_kernels.problem()}")


def _rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


@pytest.mark.parametrize("pos", [0, 15, 16, 37, 300])
@pytest.mark.parametrize("heads, kv_heads, hd", [(9, 3, 64), (4, 4, 128)])
def test_matches_torch_attention_and_writes_the_cache(pos, heads, kv_heads, hd):
    torch.manual_seed(pos)
    capacity = 320
    keys, values = torch.randn(kv_heads, capacity, hd), torch.randn(kv_heads, capacity, hd)
    qkv = torch.randn(1, (heads + 2 * kv_heads) * hd) * 3  # sharp softmaxes too
    angles = torch.rand(hd // 2) * 20
    cos, sin = torch.cat([angles, angles]).cos(), torch.cat([angles, angles]).sin()
    got_k, got_v = keys.clone(), values.clone()
    out = decode_attention(qkv, cos, sin, got_k, got_v, pos, heads)

    q = _rope(qkv[0, :heads * hd].view(heads, hd), cos, sin)
    k = _rope(qkv[0, heads * hd:(heads + kv_heads) * hd].view(kv_heads, hd), cos, sin)
    want_k, want_v = keys.clone(), values.clone()
    want_k[:, pos], want_v[:, pos] = k, qkv[0, (heads + kv_heads) * hd:].view(kv_heads, hd)
    assert torch.allclose(got_k, want_k, atol=1e-6) and torch.equal(got_v, want_v)
    group = heads // kv_heads
    seen_k = want_k[:, :pos + 1].repeat_interleave(group, 0)
    seen_v = want_v[:, :pos + 1].repeat_interleave(group, 0)
    scores = (q[:, None] @ seen_k.transpose(1, 2)) / math.sqrt(hd)
    want = (scores.softmax(-1) @ seen_v).reshape(1, heads * hd)
    assert torch.allclose(out, want, atol=1e-5)


def test_heads_it_cannot_serve_are_named():
    assert "multiple of 64" in problem(96)
    assert problem(64) is None


def test_wrong_shapes_are_refused_before_any_write():
    keys, values = torch.zeros(2, 8, 64), torch.zeros(2, 8, 64)
    cos, sin = torch.ones(64), torch.zeros(64)
    for qkv, pos in ((torch.randn(1, 5 * 64), 3),  # heads=4 needs (4 + 2 * 2) x 64 values
                     (torch.randn(1, 8 * 64), 8),  # position past the cache
                     (torch.randn(1, 8 * 64), -1)):  # and before it
        with pytest.raises(ValueError, match="wrong shape"):
            decode_attention(qkv, cos, sin, keys, values, pos, heads=4)
    assert not keys.any() and not values.any()


def test_a_nan_in_the_cache_shows_in_the_output_as_in_torch():
    keys, values = torch.randn(1, 8, 64), torch.randn(1, 8, 64)
    keys[0, 2, 5] = float("nan")  # a corrupted entry must not be silently weighted 0
    out = decode_attention(torch.randn(1, 3 * 64), torch.ones(64), torch.zeros(64), keys,
                           values, 4, heads=1)
    assert out.isnan().all()
