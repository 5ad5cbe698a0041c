"""Wire the parts together once per process: store, engine, retriever, adapters, service."""

from __future__ import annotations

from dataclasses import dataclass

from chat.config import Config
from chat.engine import Engine
from chat.profiles import ProfileStore
from chat.service import ChatService
from feedback.store import Store


@dataclass
class Runtime:
    cfg: Config
    store: Store
    engine: Engine
    service: ChatService


def build_runtime(cfg: Config, engine: Engine | None = None) -> Runtime:
    """Open the store and load the model (pass `engine` to share one already loaded)."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.db_path)
    engine = engine or Engine.from_config(cfg)
    service = ChatService(cfg, engine, store)
    service.prompts = ProfileStore(store, cfg.system_prompt)
    return Runtime(cfg, store, engine, service)
