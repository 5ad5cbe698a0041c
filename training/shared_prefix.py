"""Faster DPO steps on a CPU, with the same numbers: each pair's shared prefix runs once.

TRL's DPOTrainer runs a batch as 2B whole sequences, [chosen; rejected], so every prompt is
computed twice in the policy pass and twice again in the reference pass. In a causal model the
hidden states of a sequence's first p tokens depend on those tokens only, so rows i and B+i,
which open with the same prompt, can share them exactly: run the B shared prefixes once with a
KV cache, index the cache for both rows, then run only what follows. Gradients flow back through
the indexing into the shared part, so the loss and its gradient are those of the plain forward
(tests/test_shared_prefix.py compares both). On the bench pairs ~70% of tokens are prompt.

Second, TRL's fused LM head scores every position on devices without Triton (to keep tile
shapes fixed for compilers); on a CPU that is wasted work on prompt tokens, so inside these
steps it scores only the positions that have a label, as it already does on CUDA.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

MIN_SHARED = 4  # a shorter common prefix is not worth a second pass


def _backbone(model):
    """The decoder stack (LlamaModel & co.) inside a peft/transformers causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    return decoder if hasattr(decoder, "layers") else None


def _flush_left(mask: torch.Tensor) -> bool:
    """Every row is tokens then padding (what TRL's collator produces)."""
    lengths = mask.sum(1, keepdim=True)
    expected = torch.arange(mask.shape[1], device=mask.device) < lengths
    return bool((mask == expected.to(mask.dtype)).all())


def shared_lengths(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """Per pair, how many leading tokens rows i and B+i share (each keeps >= 1 of its own)."""
    if ids.shape[0] % 2 or not _flush_left(mask):
        return None
    half = ids.shape[0] // 2
    same = (ids[:half] == ids[half:]) & (mask[:half] == 1) & (mask[half:] == 1)
    shared = same.long().cumprod(dim=1).sum(dim=1)
    lengths = mask.sum(dim=1)
    return torch.minimum(shared, torch.minimum(lengths[:half], lengths[half:]) - 1).clamp(min=0)


def _rest(ids, mask, start):
    """Each row's tokens from `start[r]` on, left-aligned, with their mask and positions."""
    lengths = mask.sum(dim=1)
    width = int((lengths - start).max())
    offsets = torch.arange(width, device=ids.device)
    index = (start[:, None] + offsets).clamp(max=ids.shape[1] - 1)
    valid = offsets[None, :] < (lengths - start)[:, None]
    return ids.gather(1, index), valid.long(), start[:, None] + offsets


def shared_forward(forward, ids, mask, shared, **kwargs):
    """The backbone's last hidden state for [chosen; rejected], prefixes computed once."""
    from transformers.modeling_outputs import BaseModelOutputWithPast

    half, width = ids.shape[0] // 2, int(shared.max())
    prefix_mask = (torch.arange(width, device=ids.device)[None, :] < shared[:, None]).long()
    prefix = forward(input_ids=ids[:half, :width], attention_mask=prefix_mask, use_cache=True,
                     **kwargs)
    cache = prefix.past_key_values
    both = torch.arange(half, device=ids.device).repeat(2)
    cache.reorder_cache(both)  # index_select: differentiable, each pair's rows see one prefix
    start = shared.repeat(2)
    rest_ids, rest_mask, positions = _rest(ids, mask, start)
    rest = forward(input_ids=rest_ids, attention_mask=torch.cat([prefix_mask[both], rest_mask], 1),
                   position_ids=positions, past_key_values=cache, use_cache=True, **kwargs)
    # position t of row r: from the prefix pass when t < start[r], else from the rest pass
    hidden = torch.cat([prefix.last_hidden_state[both], rest.last_hidden_state], dim=1)
    t = torch.arange(ids.shape[1], device=ids.device)[None, :]
    index = torch.where(t < start[:, None], t, width + (t - start[:, None]))
    index = index.clamp(max=hidden.shape[1] - 1)
    out = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
    return BaseModelOutputWithPast(last_hidden_state=out)


@contextmanager
def sharing_prefixes(model):
    """Within the block, 2B-row forwards of `model` share each pair's prefix; nothing else
    changes (other calls, odd batches and short common prefixes take the plain path)."""
    import trl.trainer.utils as trl_utils

    backbone = _backbone(model)
    if backbone is None:
        yield
        return
    plain = backbone.forward

    def forward(input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, **kwargs):
        shared = None
        if (input_ids is not None and attention_mask is not None and position_ids is None
                and past_key_values is None and inputs_embeds is None):
            shared = shared_lengths(input_ids, attention_mask)
        if shared is None or int(shared.min()) < MIN_SHARED:
            return plain(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, past_key_values=past_key_values,
                         inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
        return shared_forward(plain, input_ids, attention_mask, shared, **kwargs)

    compact = trl_utils._use_triton
    backbone.forward = forward
    trl_utils._use_triton = lambda device: True  # score labelled positions only (see above)
    try:
        yield
    finally:
        del backbone.forward
        trl_utils._use_triton = compact
