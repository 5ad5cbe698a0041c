"""GET /v1/models lists servable adapter versions; `model` pins one for a request."""

from __future__ import annotations

import openai
import pytest

from tests import api_support
from tests.api_support import client

live = api_support.live  # the module-scoped server fixture


def _lora_candidate(live, real_engine, tmp_path) -> str:
    """Register a zero-initialised LoRA (it answers like the base) as a candidate version."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training import registry

    base = AutoModelForCausalLM.from_config(real_engine.model.config)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path / "adapter"
    peft_model.save_pretrained(folder)
    cfg = live["cfg"]
    return registry.register(live["store"], cfg.adapters_dir, folder, method="dpo",
                             base_model=cfg.base_model, metrics={}, meta={}, passed=True,
                             run_id=None)


def test_models_list_and_pin_an_adapter_version(live, real_engine, tmp_path):
    base = live["cfg"].base_model
    version = _lora_candidate(live, real_engine, tmp_path)
    ids = [m.id for m in client(live).models.list()]
    assert {base, f"{base}@base", f"{base}@{version}"} <= set(ids)

    pinned = client(live).chat.completions.create(
        model=f"{base}@{version}", messages=[{"role": "user", "content": "Hi!"}], max_tokens=3)
    assert pinned.model == f"{base}@{version}"
    assert pinned.model_extra["adapter_version"] == version
    row = live["store"].message(pinned.model_extra["message_id"])
    assert row["adapter_version"] == version

    plain = client(live).chat.completions.create(
        model=base, messages=[{"role": "user", "content": "Hi!"}], max_tokens=3)
    assert plain.model_extra["adapter_version"] != version  # a candidate serves only if pinned
    with pytest.raises(openai.NotFoundError):
        client(live).chat.completions.create(
            model=f"{base}@v0999", messages=[{"role": "user", "content": "Hi!"}], max_tokens=3)
