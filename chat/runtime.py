"""Wire the parts together once per process: store, engine, retriever, adapters, service."""

from __future__ import annotations

from dataclasses import dataclass

from chat.config import Config
from chat.engine.engine import Engine
from chat.profiles import ProfileStore
from chat.service import ChatService
from feedback.store import Store
from retrieval.retriever import KNOWLEDGE_DIR, Retriever


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
    retriever = Retriever(cfg, store, seed_dir=KNOWLEDGE_DIR)  # loads lazily, on first query
    service = ChatService(cfg, engine, store, retriever=retriever)
    service.prompts = ProfileStore(store, cfg.system_prompt)
    from chat.engine.pool import AdapterPool

    service.adapters = AdapterPool(store, engine, cfg)  # `serve` starts its registry watcher
    return Runtime(cfg, store, engine, service)
