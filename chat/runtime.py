"""Wire the parts together once per process: store, engine, retriever, adapters, prompt
profiles, rate limit, service, and what the web app and the API share around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chat.auth import Authorizer
from chat.config import Config
from chat.engine.engine import Engine
from chat.engine.pool import AdapterPool
from chat.limits import InFlight, RateLimiter
from chat.profiles import ProfileStore
from chat.service import ChatService
from chat.web.downloads import PrivateDownloads
from feedback.store import Store
from retrieval.retriever import KNOWLEDGE_DIR, Retriever
from training.runner import maybe_autotrain


@dataclass
class Runtime:
    """The one wiring of a process, handed to every web handler and API route: the service
    (loaded once, shared by all sessions), who may do what, the web app's private downloads
    and the bound on API requests in flight."""

    service: ChatService
    authorizer: Authorizer
    in_flight: InFlight
    downloads: PrivateDownloads = field(default_factory=PrivateDownloads)

    @property
    def cfg(self) -> Config:
        return self.service.cfg

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def engine(self) -> Engine:
        return self.service.engine


def build_runtime(cfg: Config, engine: Engine | None = None, store: Store | None = None,
                  knowledge: Path | None = KNOWLEDGE_DIR) -> Runtime:
    """Open the store and load the model (pass `engine` or `store` to share one already open).
    `knowledge` is ingested into an empty knowledge base on its first use (None: it starts
    empty)."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = store or Store(cfg.db_path)
    engine = engine or Engine.from_config(cfg)
    service = ChatService(
        cfg, engine, store,
        retriever=Retriever(cfg, store, seed_dir=knowledge),  # loads lazily, on first query
        # `serve` starts its registry watcher (and, with CHAT_AUTO_TRAIN_EVERY, the auto
        # trigger); without it the registry is read per request
        adapters=AdapterPool(store, engine, cfg, autotrain=maybe_autotrain),
        prompts=ProfileStore(store, cfg.system_prompt),
        limiter=RateLimiter(cfg.rate_limit_per_minute))
    return Runtime(service, Authorizer(cfg, store), InFlight(cfg.max_queue))
