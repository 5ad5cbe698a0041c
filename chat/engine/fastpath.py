"""A lean decode path for llama models: plain tensors, fused linears, static KV cache.

`FastModel(model, adapter, mode)` holds one served version (base, or base with one LoRA
adapter) as plain tensors, so a decode step is ~20 tensor ops per layer with no module, hook or
peft overhead. On a CPU, where the base weights lie exactly on a GGUF block grid (the shipped
model's do; chat/engine/c_kernels.py), every version shares the base: decode steps read its 4/8-bit
blocks, prompts the same blocks with int16 inputs (or its fp32 weights), and the adapter is
added beside them in low rank (chat/engine/fast_linear.py). Elsewhere each version is a copy of the
weights with the LoRA merged in, stored as `mode`. Anything this path cannot compute as
transformers does (another architecture, rope scaling, DoRA, LoRA on embeddings or with
biases) raises `Unsupported` and the engine keeps serving that version through the ordinary
transformers/peft path. The tensors live on the model's device; on a GPU only the
plain-matmul kinds (bf16, fp32) apply, the others being CPU kernels (fbgemm, aten's int8
GEMV, the block kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chat.config import FAST_PATH_MODES
from chat.engine import c_kernels
from chat.engine.decode_attention import decode_attention
from chat.engine.decode_attention import problem as attention_problem
from chat.engine.fast_linear import (
    Linear,
    Norm,
    Unsupported,
    base_blocks,
    base_product,
    lora_factors,
    make_linear,
    merged_weight,
    prompt_kernel,
)
from chat.engine.fast_mode import GPU_MODES
from chat.engine.prefix_cache import PrefixCache

__all__ = ["FastModel", "KVCache", "Unsupported", "prompt_kernel"]

MODES = FAST_PATH_MODES
_PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
         "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
         "down": "mlp.down_proj"}
# the projections each fused matrix of a layer is made of
_GROUPS = {"qkv": ("q", "k", "v"), "o": ("o",), "gate_up": ("gate", "up"), "down": ("down",)}


# ---------------------------------------------------------------------------- weights


def _check_all_merged(model, adapter: str | None, merged: set[int]) -> None:
    from peft.tuners.lora import LoraLayer

    if adapter is None:
        return
    for module in model.modules():
        if isinstance(module, LoraLayer) and id(module) not in merged and (
                adapter in module.lora_A or adapter in getattr(module, "lora_embedding_A", {})):
            raise Unsupported(f"adapter {adapter} touches a layer the fast path does not merge")


def _base_and_config(model):
    # not get_base_model(): it reads the active adapter's config, which may have been deleted
    base = model.base_model.model if hasattr(model, "get_base_model") else model
    cfg = base.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    if cfg.model_type != "llama" or rope.get("rope_type", "default") != "default":
        raise Unsupported(f"fast path supports plain llama models, not {cfg.model_type}")
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise Unsupported("fast path does not handle attention/MLP biases")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise Unsupported("fast path supports SiLU MLPs only")
    return base, cfg, rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))


@dataclass
class _Layer:
    ln1: Norm
    ln2: Norm
    qkv: Linear
    o: Linear
    gate_up: Linear
    down: Linear


# ---------------------------------------------------------------------------- the model


class FastModel:
    """One served version (base, or base with one adapter) as plain tensors; thread-safe."""

    def __init__(self, model, adapter: str | None = None, mode: str = "int8",
                 blocks: bool = True, prompt_blocks: bool = True):
        if mode not in MODES:
            raise ValueError(f"fast path mode must be one of {MODES}, got {mode!r}")
        base, cfg, theta = _base_and_config(model)
        self.device = base.model.embed_tokens.weight.device
        if self.device.type != "cpu" and mode not in GPU_MODES:
            raise Unsupported(f"fast path mode {mode} runs on CPUs only, not {self.device}")
        self.adapter, self.mode = adapter, mode
        # why decode steps cannot read exact GGUF blocks, where they cannot (None: they can)
        self.no_blocks = ("turned off" if not blocks else "CPU only"
                          if self.device.type != "cpu" else c_kernels.problem())
        self.use_blocks = self.no_blocks is None
        # why prompts cannot read the blocks (rounding their inputs to int16), where they cannot
        # (fp16 mode, `auto`'s on a CPU, only: the others keep prompts in their own kind)
        self.no_prompt_blocks = self.no_blocks or (
            "turned off" if not prompt_blocks else f"{mode} mode keeps prompts in {mode}"
            if mode != "fp16" else c_kernels.prompt_problem())
        self.prompt_blocks = self.no_prompt_blocks is None
        self.block_linears = 0  # linears whose decode reads exact GGUF blocks
        self.shared_linears = 0  # of those, linears whose prompts read the base (blocks or fp32)
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        # decode steps' attention in one C call where it can run (chat/engine/decode_attention.py)
        self.c_attention = self.use_blocks and attention_problem(self.head_dim) is None
        self.eps, self.max_pos = cfg.rms_norm_eps, cfg.max_position_embeddings
        merged: set[int] = set()
        with torch.no_grad():
            self.layers = [self._layer(layer, adapter, mode, merged) for layer in base.model.layers]
            self.embed = base.model.embed_tokens.weight.detach().float()
            self.norm = Norm(base.model.norm.weight.detach().float(), self.eps)
            self.lm_head = self._linear([base.lm_head], adapter, mode, merged, prefill=False)
        _check_all_merged(model, adapter, merged)
        inv = 1.0 / theta ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim)
        freqs = torch.outer(torch.arange(self.max_pos).float(), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = emb.cos().to(self.device), emb.sin().to(self.device)
        self.prefixes = PrefixCache()  # earlier prompts' keys/values, for prefix reuse

    def _layer(self, layer, adapter, mode, merged) -> _Layer:
        linears = {group: self._linear([layer.get_submodule(_PROJ[name]) for name in names],
                                       adapter, mode, merged)
                   for group, names in _GROUPS.items()}
        return _Layer(ln1=Norm(layer.input_layernorm.weight.detach().float(), self.eps),
                      ln2=Norm(layer.post_attention_layernorm.weight.detach().float(), self.eps),
                      **linears)

    def _linear(self, modules, adapter, mode, merged, prefill=True) -> Linear:
        """The modules stacked into one matrix. Where the base weights lie on a GGUF grid,
        decode steps read the shared base blocks plus the adapter in low rank (exact), and
        so do prompts, over the same blocks with int16 inputs (or the base's own fp32
        weights) unless this mode keeps another kind for them (bf16 where it is faster,
        int8): no per-version copy at all. Elsewhere prompts and decode steps read a copy of
        the merged weight stored as `mode`."""
        blocks = base_blocks(modules) if self.use_blocks else None
        lora = None
        if blocks is not None:
            self.block_linears += 1
            lora = lora_factors(modules, adapter, merged)
            if prefill and self.prompt_blocks:  # before bf16: closer to fp32, and no copy
                self.shared_linears += 1
                blocks.packed  # noqa: B018 - laid out now, not on the first prompt
                return Linear(None, blocks=blocks, lora=lora, prompt_blocks=True)
            if not prefill or prompt_kernel(mode) in ("fp16", "fp32"):
                self.shared_linears += prefill
                return Linear(base_product(modules) if prefill else None, blocks=blocks,
                              lora=lora, base_prompts=True)
        weight = torch.cat([merged_weight(m, adapter, merged).float() for m in modules])
        return make_linear(weight, mode, prefill, blocks, lora)

    @property
    def kernels(self) -> dict[str, str]:
        """Which weights decode steps and prompts read, for benchmarks and logs."""
        total = 4 * len(self.layers) + 1
        attention = ", attention in C" if self.c_attention else ""
        if not self.block_linears:
            why = self.no_blocks or "weights on no GGUF grid"
            return {"decode": f"{self.mode} (block kernels: {why}){attention}",
                    "prompts": prompt_kernel(self.mode)}
        rest = f", the rest {self.mode}" if self.block_linears < total else ""
        shared = ("int16 inputs x GGUF blocks" if self.prompt_blocks else
                  f"fp32 base (int16 blocks: {self.no_prompt_blocks})")
        prompts = (prompt_kernel(self.mode) if not self.shared_linears else
                   f"{shared} + LoRA ({self.shared_linears} of {total - 1} linears{rest})")
        return {"decode": f"exact GGUF blocks ({self.block_linears} of {total} linears{rest})"
                          f"{attention}", "prompts": prompts}

    # ------------------------------------------------------------------ forward

    def _rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(self, ids: list[int], cache: KVCache, prompt: bool = False) -> torch.Tensor:
        """Logits (fp32) of the last position after appending `ids` to `cache`; `prompt`
        marks prefill (compute-bound: the linears may use their prompt copy)."""
        start, n = cache.length, len(ids)
        if start + n > cache.capacity:
            raise ValueError("KV cache is full")
        x = self.embed[torch.tensor(ids, device=self.device)]
        cos, sin = self.cos[start:start + n], self.sin[start:start + n]
        nq, nkv, hd = self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.head_dim
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(x, prompt, norm=layer.ln1)
            if n == 1 and self.c_attention:  # cos, sin: this row's, [1, hd]
                attn = decode_attention(qkv, cos, sin, cache.k[i], cache.v[i], start,
                                        self.n_heads)
                x = self._mlp(layer, attn, x, prompt)
                continue
            q = qkv[:, :nq].view(n, self.n_heads, hd).transpose(0, 1)
            k = qkv[:, nq:nq + nkv].view(n, self.n_kv, hd).transpose(0, 1)
            v = qkv[:, nq + nkv:].view(n, self.n_kv, hd).transpose(0, 1)
            keys, values = cache.append(i, self._rope(k, cos, sin), v, start)
            q_start, q_n = start, n
            if i == last and n > 1:
                # The last layer's keys/values are cached for every position, but only the
                # final position's output reaches the logits: its query alone goes on.
                q, cos, sin, x = q[:, -1:], cos[-1:], sin[-1:], x[-1:]
                q_start, q_n = start + n - 1, 1
            attn = self._attend(self._rope(q, cos, sin), keys, values, q_start, q_n)
            x = self._mlp(layer, attn, x, prompt)
        cache.length = start + n
        return self.lm_head(x[-1:], norm=self.norm)[0]

    def _mlp(self, layer, attn, x, prompt):
        """The residual stream after the attention output's projection and the MLP."""
        x = layer.o(attn, prompt, into=x.contiguous())  # x += o(attn)
        gu = layer.gate_up(x, prompt, norm=layer.ln2)
        half = gu.shape[-1] // 2
        return layer.down(F.silu(gu[:, :half]) * gu[:, half:], prompt, into=x)

    def _attend(self, q, keys, values, start, n):
        """Grouped-query attention of n new queries over the cache; returns [n, heads*hd]."""
        group = self.n_heads // self.n_kv
        if n == 1:  # decode: plain matmuls over [kv_heads, group, hd] avoid SDPA's overhead
            qg = q.reshape(self.n_kv, group, self.head_dim)
            scores = torch.matmul(qg, keys.transpose(1, 2)) * self.head_dim ** -0.5
            out = torch.matmul(torch.softmax(scores, dim=-1), values)
            return out.reshape(1, self.n_heads * self.head_dim)
        mask = None
        if start:  # new queries see the whole cached prefix and themselves causally
            mask = torch.ones(n, start + n, dtype=torch.bool, device=q.device).tril(
                diagonal=start)
        out = F.scaled_dot_product_attention(
            q.unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0), attn_mask=mask,
            is_causal=mask is None, enable_gqa=True)[0]
        return out.transpose(0, 1).reshape(n, self.n_heads * self.head_dim)

    # ------------------------------------------------------------------ caches

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(len(self.layers), self.n_kv, min(capacity, self.max_pos), self.head_dim,
                       self.device)

    def prefill(self, ids: list[int], capacity: int, key=None) -> tuple[KVCache, torch.Tensor]:
        """A cache holding `ids` and the next-token logits, starting from the longest prefix
        cached by the last prompt or by conversation `key`'s last prompt."""
        cache = self.new_cache(max(capacity, len(ids) + 1))
        shared, earlier = self.prefixes.best(ids, key)
        shared = min(shared, len(ids) - 1)  # always run at least one token for logits
        if shared > 0:
            cache.copy_prefix(earlier, shared)
        cache.reused = cache.length  # prompt tokens whose keys/values were copied, not computed
        logits = self.forward(ids[cache.length:], cache, prompt=True)
        self.prefixes.remember(ids, cache, key)
        return cache, logits


class KVCache:
    """Preallocated keys/values for one request: [layers][kv_heads, capacity, head_dim]."""

    def __init__(self, n_layers: int, n_kv: int, capacity: int, head_dim: int,
                 device: torch.device | str = "cpu"):
        self.capacity, self.length, self.reused = capacity, 0, 0
        self.k = torch.zeros(n_layers, n_kv, capacity, head_dim, device=device)
        self.v = torch.zeros(n_layers, n_kv, capacity, head_dim, device=device)

    def append(self, layer: int, k, v, start: int):
        end = start + k.shape[1]
        self.k[layer, :, start:end] = k
        self.v[layer, :, start:end] = v
        return self.k[layer, :, :end], self.v[layer, :, :end]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def copy_prefix(self, other: KVCache, n: int) -> None:
        self.k[:, :, :n] = other.k[:, :, :n]
        self.v[:, :, :n] = other.v[:, :, :n]
        self.length = n
