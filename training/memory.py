"""Bounded memory for a training run on a CPU (measured in docs/performance.md#training-memory).

With bf16 autocast, a run's resident memory grew by ~100 MB a step (4.4 GiB after 24 steps)
while the tensors Python could see stayed at the model's 534 MB. Three causes, three fixes:
- oneDNN and PyTorch's ideep keep a compiled primitive per matmul shape (1024 each by
  default); every micro-batch brings new sequence lengths, so both caches only grow. The run
  process caps them (RUN_PROCESS_ENV), at no measured cost in speed.
- glibc keeps freed activation memory for reuse and rarely hands it back; trimming the heap
  after each optimizer step (`trim_heap`) starts every step from the live memory.
- autocast casts every frozen weight to bf16 on every forward and frees it again; the frozen
  linear weights of the decoder are kept in bf16 instead (`freeze_linears_in_bf16`): the same
  matmuls (autocast would have cast them to bf16), half their memory and no churn."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# read by oneDNN / ideep when they first build a primitive: set before the process starts
RUN_PROCESS_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}


def _libc():
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


_LIBC = _libc()


def trim_heap() -> bool:
    """Give the heap's free pages back to the system (glibc only; False elsewhere)."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))


def freeze_linears_in_bf16(model) -> int:
    """Keep the decoder layers' linear weights in bf16 (for a frozen base under CPU bf16
    autocast: the LoRA weights PEFT adds stay fp32); returns how many were cast. Embeddings,
    norms and the LM head keep fp32, so the residual stream stays fp32 as under autocast."""
    import torch

    count = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in name:
            module.to(torch.bfloat16)
            count += 1
    return count
