"""Which kernels serve: the fast path's mode for a device, and on a GPU how many copies fit."""

from __future__ import annotations

from chat.config import FAST_PATH_MODES as MODES
from chat.errors import BadInput

GPU_MODES = ("bf16", "fp32")  # F.linear on any device; fp16 (fbgemm) and int8 are CPU kernels
GPU_SHARE = 0.25  # of a GPU's memory that the merged copies of the served versions may take
FAST_SLOTS = 3  # fast versions kept (base, active, one more): merged copies
# ~0.3-0.6 GB each, or only LoRA factors where they share the base's GGUF blocks


def choose_fast_mode(setting: str, device: str, gpu_auto=lambda: "off") -> str:
    """auto: fp16 mode on CPU (exact GGUF blocks where the weights allow, else fbgemm fp16
    weights; greedy output matched fp32 on our prompts either way); on a GPU
    `gpu_auto()` picks by memory. A GPU takes bf16 or fp32 only (fp16 and int8 are CPU kernels)."""
    setting = (setting or "auto").lower()
    if setting not in ("auto", "off", *MODES):
        raise BadInput(f"fast_path must be auto, off or one of {MODES}, got {setting!r}")
    if setting == "auto":
        return "fp16" if device == "cpu" else gpu_auto()
    if device == "cpu" or setting == "off":
        return setting
    if setting not in GPU_MODES:
        raise BadInput(f"fast_path {setting} uses CPU kernels; on {device} use "
                       f"{', '.join(GPU_MODES)} or off")
    return setting


def gpu_auto(model, device: str) -> str:
    import torch

    total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    return gpu_auto_mode(sum(p.numel() for p in model.parameters()), embed.numel(),
                         head.data_ptr() == embed.data_ptr(), total, FAST_SLOTS)


# ---------------------------------------------------------------------------- copies


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
