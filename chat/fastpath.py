"""A lean decode path for llama models: merged LoRA, fp16/int8/bf16 weights, static KV cache.

`FastModel.build(model, adapter)` copies the weights of one version (base, or base with one
LoRA adapter merged in) into plain tensors, so a decode step is ~25 tensor ops per layer with no
module, hook or peft overhead. Anything this path cannot reproduce exactly (another
architecture, rope scaling, DoRA, LoRA on embeddings) raises `Unsupported` and the engine keeps
serving that version through the ordinary transformers/peft path. The tensors live on the
model's device; on a GPU only the plain-matmul kinds (bf16, fp32) apply, the others being
CPU kernels (fbgemm, aten's int8 GEMV).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chat.config import FAST_PATH_MODES
from chat.hardware import cpu_has_fast_bf16
from chat.prefix_cache import PrefixCache

MODES = FAST_PATH_MODES
GPU_MODES = ("bf16", "fp32")  # F.linear on any device; fp16 (fbgemm) and int8 are CPU kernels
GPU_SHARE = 0.25  # of a GPU's memory that the merged copies of the served versions may take
_PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
         "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
         "down": "mlp.down_proj"}


class Unsupported(Exception):
    """This model or adapter cannot be served by the fast path (the engine falls back)."""


# ---------------------------------------------------------------------------- linear layers


def prompt_kernel(mode: str) -> str:
    """The weights prompts run through in `mode`: fp16 mode keeps a bf16 prompt copy only
    where this CPU measured bf16 faster than fp32 (chat/hardware.py)."""
    return "bf16" if mode == "fp16" and cpu_has_fast_bf16() else mode


def make_linear(weight: torch.Tensor, mode: str, prefill: bool = True):
    """A function (x fp32 [T, in], prompt: bool) -> fp32 [T, out] over `weight` stored as
    `mode`. `prompt` marks a prefill call; with `prefill` False (the LM head, which only sees
    the last position) no prompt copy is kept."""
    weight = weight.detach().float().contiguous()
    if mode == "fp32":
        return lambda x, prompt=False: F.linear(x, weight)
    if mode == "bf16":
        wb = weight.to(torch.bfloat16)
        return lambda x, prompt=False: F.linear(x.to(torch.bfloat16), wb).float()
    if mode == "fp16":
        # Decode (one row) is memory-bound: fbgemm's fp16 GEMM reads half the bytes of fp32.
        # Prefill is compute-bound, where fbgemm fp16 is no faster than fp32, but oneDNN's
        # bf16 GEMM (AVX512-BF16) runs ~2x fp32: prompts go through a bf16 copy. The choice
        # follows the call (prefill or decode), not its row count, so a prompt whose prefix
        # came from the cache gets the same numbers as one computed whole.
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        op16 = torch.ops.quantized.linear_dynamic_fp16
        wide = weight.to(torch.bfloat16) if prefill and prompt_kernel(mode) == "bf16" else None

        def linear(x, prompt=False):
            if wide is not None and prompt:
                return F.linear(x.to(torch.bfloat16), wide).float()
            return op16(x, packed)
        return linear
    # int8 weight-only, one symmetric scale per output channel; activations stay bf16, so
    # only the weights are rounded (the kernel is aten's, the one gpt-fast uses on CPU).
    scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    scale = scale.to(torch.bfloat16)
    mm = torch.ops.aten._weight_int8pack_mm
    return lambda x, prompt=False: mm(x.to(torch.bfloat16), q, scale).float()


def copy_bytes(n_params: int, n_embed: int, tied: bool, size: int) -> int:
    """One served version's copy with `size`-byte weights: the embedding stays fp32, and the
    LM head is a copy of its own even where the model ties it to the embedding."""
    return (n_params - n_embed) * size + n_embed * 4 + (n_embed * size if tied else 0)


def gpu_auto_mode(n_params: int, n_embed: int, tied: bool, gpu_bytes: int, copies: int) -> str:
    """`auto` on a GPU: fp32 copies where they fit, else bf16, else no fast path. fp32 gave
    fp32's greedy answers and was no slower: a small model's decode step waits on kernel
    launches, not bytes (H200, SmolLM2, 6 prompts x 64 tokens: 78 tok/s with fp32 copies, 52
    with bf16 ones, whose casts around each matmul are more launches; 24 through transformers)."""
    for mode, size in (("fp32", 4), ("bf16", 2)):
        if copy_bytes(n_params, n_embed, tied, size) * copies <= GPU_SHARE * gpu_bytes:
            return mode
    return "off"


# ---------------------------------------------------------------------------- weights


def _effective_weight(module, adapter: str | None, merged: set[int]) -> torch.Tensor:
    """The module's weight with `adapter`'s LoRA delta added (peft's own delta formula)."""
    from peft.tuners.lora import LoraLayer

    if not isinstance(module, LoraLayer):
        return module.weight.detach()
    base = module.get_base_layer().weight.detach()
    if module.merged_adapters:
        raise Unsupported("an adapter is merged into the base weights")
    if adapter is None or adapter not in module.lora_A:
        return base
    if getattr(module, "use_dora", {}).get(adapter) or getattr(module, "lora_variant", {}).get(
            adapter) is not None:
        raise Unsupported(f"adapter {adapter} uses a LoRA variant (DoRA...) that cannot merge")
    merged.add(id(module))
    # in fp32 whatever the served dtype: added in bf16 (a GPU's), 30% of the LoRA's change (L2)
    # was rounded away, and fp32 copies gave peft's greedy answers 5 times in 6 instead of 6
    return base.float() + module.get_delta_weight(adapter).float()


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
    ln1: torch.Tensor
    ln2: torch.Tensor
    qkv: object
    o: object
    gate_up: object
    down: object


# ---------------------------------------------------------------------------- the model


class FastModel:
    """One served version (base or base+merged adapter) as plain tensors; thread-safe reads."""

    def __init__(self, model, adapter: str | None = None, mode: str = "int8"):
        if mode not in MODES:
            raise ValueError(f"fast path mode must be one of {MODES}, got {mode!r}")
        base, cfg, theta = _base_and_config(model)
        self.device = base.model.embed_tokens.weight.device
        if self.device.type != "cpu" and mode not in GPU_MODES:
            raise Unsupported(f"fast path mode {mode} runs on CPUs only, not {self.device}")
        self.adapter, self.mode = adapter, mode
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps, self.max_pos = cfg.rms_norm_eps, cfg.max_position_embeddings
        merged: set[int] = set()
        with torch.no_grad():
            self.layers = [self._layer(layer, adapter, mode, merged) for layer in base.model.layers]
            self.embed = base.model.embed_tokens.weight.detach().float()
            self.norm = base.model.norm.weight.detach().float()
            self.lm_head = make_linear(_effective_weight(base.lm_head, adapter, merged),
                                       mode, prefill=False)
        _check_all_merged(model, adapter, merged)
        inv = 1.0 / theta ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim)
        freqs = torch.outer(torch.arange(self.max_pos).float(), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = emb.cos().to(self.device), emb.sin().to(self.device)
        self.prefixes = PrefixCache()  # earlier prompts' keys/values, for prefix reuse

    def _layer(self, layer, adapter, mode, merged) -> _Layer:
        w = {k: _effective_weight(layer.get_submodule(p), adapter, merged).float()
             for k, p in _PROJ.items()}
        return _Layer(
            ln1=layer.input_layernorm.weight.detach().float(),
            ln2=layer.post_attention_layernorm.weight.detach().float(),
            qkv=make_linear(torch.cat([w["q"], w["k"], w["v"]]), mode),
            o=make_linear(w["o"], mode),
            gate_up=make_linear(torch.cat([w["gate"], w["up"]]), mode),
            down=make_linear(w["down"], mode))

    # ------------------------------------------------------------------ forward

    def _rms(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

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
            qkv = layer.qkv(self._rms(x, layer.ln1), prompt)
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
            x = x + layer.o(attn, prompt)
            gu = layer.gate_up(self._rms(x, layer.ln2), prompt)
            half = gu.shape[-1] // 2
            x = x + layer.down(F.silu(gu[:, :half]) * gu[:, half:], prompt)
        cache.length = start + n
        return self.lm_head(self._rms(x[-1:], self.norm))[0]

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
