"""The whole runtime around a given engine and configuration, for tests: the real service with
its real collaborators (retriever, adapter pool, prompt profiles, rate limiter, authorizer),
built by the same build_runtime as the server and the CLI."""

from __future__ import annotations

from chat.config import Config, replace
from chat.runtime import Runtime, build_runtime
from feedback.store import Store


def wired(cfg: Config, engine, store: Store | None = None, **changes) -> Runtime:
    """A runtime on `cfg` (with `changes` applied) around `engine`, sharing `store` if given.
    Its knowledge base starts empty: tests add the documents they need."""
    return build_runtime(replace(cfg, **changes) if changes else cfg, engine=engine,
                         store=store, knowledge=None)
