"""Serve the Gradio web app and the HTTP API from one process: FastAPI, Gradio mounted at "/"."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from chat.config import Config
from chat.errors import RateLimited
from chat.limits import RateLimiter

LOGIN_ATTEMPTS_PER_MINUTE = 10  # per user name: slows password guessing down to a crawl


def login_checker(store, attempts_per_minute: int = LOGIN_ATTEMPTS_PER_MINUTE
                  ) -> Callable[[str, str], bool]:
    """Gradio's auth callable: true only for a known user with the right password."""
    from chat.auth import verify_password

    limiter = RateLimiter(attempts_per_minute)

    def check(username: str, password: str) -> bool:
        try:
            limiter.check(f"login:{username}")
        except RateLimited:
            return False
        return verify_password(store, username, password)

    return check


def _watch_adapters(rt):
    """Lifespan: follow the adapter registry (hot-swap) while the server runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        pool = rt.service.adapters
        if pool is not None and hasattr(pool, "start"):
            pool.start()
        try:
            yield
        finally:
            if pool is not None and hasattr(pool, "stop"):
                pool.stop()

    return lifespan


def build_server(rt):
    """The ASGI app: /v1 API routes, /docs, /healthz, and the Gradio app at "/"."""
    import gradio as gr
    from fastapi import FastAPI

    from chat.api import ApiContext, install_api
    from chat.app import build_app
    from chat.app_chat import AppContext
    from chat.limits import InFlight

    cfg = rt.cfg
    if rt.service.limiter is None:
        rt.service.limiter = RateLimiter(cfg.rate_limit_per_minute)
    app = FastAPI(title="Learning Chat", version="0.1.0", lifespan=_watch_adapters(rt),
                  description="An OpenAI-compatible chat API with RAG and feedback; the web "
                  "app is served at /.")
    install_api(app, ApiContext(rt.service, InFlight(cfg.max_queue)))

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True}

    blocks = build_app(AppContext(rt.service))
    accounts = cfg.auth == "accounts"
    # With accounts, the Gradio login makes gr.Request.username the identity on every row.
    # Gradio's /upload is open to every logged-in user: the size limit stops a file there,
    # before it is written to disk, not only later in the admin console.
    return gr.mount_gradio_app(
        app, blocks, path="/", auth=login_checker(rt.store) if accounts else None,
        auth_message="Log in with your Learning Chat account." if accounts else None,
        show_error=True, max_file_size=int(cfg.max_file_mb * 1024 * 1024))


def serve(cfg: Config, host: str, port: int) -> None:
    """Check the auth mode, load everything once, then run uvicorn until interrupted."""
    import uvicorn

    from chat.auth import check_auth_mode
    from chat.runtime import build_runtime
    from feedback.store import Store

    check_auth_mode(cfg, host, Store(cfg.db_path))  # fail before loading the model
    rt = build_runtime(cfg)
    rt.service.adapters.start()  # follow activations made elsewhere (CLI, admin) within ~1 s
    if rt.service.retriever is not None and cfg.top_k > 0:  # CHAT_TOP_K=0: no retrieval
        print("Loading the embedder and the knowledge base index...", flush=True)
        rt.service.retriever.refresh()  # so the first question does not pay for it
    app = build_server(rt)
    mode = "accounts (login required)" if cfg.auth == "accounts" else "open single-user"
    print(f"Serving on http://{host}:{port} ({mode}); API docs at http://{host}:{port}/docs",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
