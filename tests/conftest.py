"""Shared fixtures: data folder in tmp_path, the real model loaded once, a tiny model for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The converted base model is cached once per checkout (the same place `make setup` fills).
MODEL_CACHE = Path(os.environ.get("CHAT_MODEL_CACHE", ROOT / "data" / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow real-model test: run with RUN_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data folder; the model cache is shared."""
    folder = tmp_path / "data"
    monkeypatch.setenv("CHAT_DATA_DIR", str(folder))
    monkeypatch.setenv("CHAT_MODEL_CACHE", str(MODEL_CACHE))
    for name in list(os.environ):
        if name.startswith("CHAT_") and name not in ("CHAT_DATA_DIR", "CHAT_MODEL_CACHE"):
            monkeypatch.delenv(name)
    return folder


@pytest.fixture
def cfg(data_dir):
    from chat.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def real_engine():
    """The real shipped SmolLM2-135M-Instruct, loaded once for the whole run."""
    from chat.config import load_config
    from chat.engine.engine import Engine

    return Engine.from_config(load_config(model_cache=MODEL_CACHE))


@pytest.fixture(scope="session")
def tiny_engine(real_engine):
    """A randomly initialised 2-layer llama with the real tokenizer: fast, for unit tests."""
    from chat.engine.engine import Engine
    from tests.model_support import tiny_llama

    return Engine(tiny_llama(real_engine.tokenizer, max_positions=2048),
                  real_engine.tokenizer, "cpu", max_context_tokens=512)


@pytest.fixture
def store(cfg):
    from feedback.store import Store

    return Store(cfg.db_path)


@pytest.fixture
def service(cfg, store, real_engine):
    """The service of a whole runtime around the real model (an empty knowledge base)."""
    from tests.wiring_support import wired

    return wired(cfg, real_engine, store).service
