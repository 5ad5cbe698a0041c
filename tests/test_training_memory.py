"""Bounded memory in the training process (training/memory.py)."""

from __future__ import annotations

import subprocess

from training import memory, runs


def test_the_run_process_caps_the_matmul_primitive_caches(cfg, monkeypatch):
    seen, real_popen = {}, subprocess.Popen

    def fake_popen(args, env=None, **kwargs):
        seen.update(env)
        return real_popen(["true"])

    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    monkeypatch.setattr(runs.subprocess, "Popen", fake_popen)
    runs.spawn(cfg, 1).wait()
    assert seen["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"
    assert seen["LRU_CACHE_CAPACITY"] == "16"
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "64")  # an operator's own setting wins
    runs.spawn(cfg, 1).wait()
    assert seen["LRU_CACHE_CAPACITY"] == "64"


def test_only_the_decoder_linears_are_kept_in_bf16(cfg):
    import torch
    from transformers import AutoModelForCausalLM

    from chat.engine.loading import resolve_base_model

    model = AutoModelForCausalLM.from_pretrained(resolve_base_model(cfg))
    layers = model.config.num_hidden_layers
    assert memory.freeze_linears_in_bf16(model) == 7 * layers  # q k v o gate up down
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["model.layers.0.self_attn.q_proj.weight"] == torch.bfloat16
    assert dtypes["model.layers.0.mlp.down_proj.weight"] == torch.bfloat16
    assert dtypes["model.embed_tokens.weight"] == torch.float32  # the residual stream
    assert dtypes["model.layers.0.input_layernorm.weight"] == torch.float32
    assert dtypes["model.norm.weight"] == torch.float32


def test_trimming_the_heap_hands_freed_memory_back():
    def rss_mib() -> int:
        return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20

    # many small blocks, below glibc's mmap threshold, so they live in the heap
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MiB
    held = rss_mib()
    del blocks[:-1]  # the last block pins the heap's top: free() alone cannot shrink it
    assert memory.trim_heap()
    assert rss_mib() < held - 150
