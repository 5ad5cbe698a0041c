"""Serve the Gradio web app and the HTTP API from one process: FastAPI, Gradio mounted at "/"."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from starlette.requests import HTTPConnection

from chat.api.routes import install_api
from chat.auth import OPEN_USER, Authorizer, check_auth_mode, verify_password
from chat.config import Config
from chat.runtime import Runtime, build_runtime
from chat.web.downloads import DownloadGuard
from chat.web.login_guard import LoginGuard, LoginThrottle
from chat.web.page import PAGE_CSS, PAGE_JS
from feedback.store import Store


def login_checker(store: Store) -> Callable[[str, str], bool]:
    """Gradio's auth callable: true only for a known user with the right password. Guessing
    is slowed down before this is called, per client address (chat/web/login_guard.py)."""
    return lambda username, password: verify_password(store, username, password)


def _watch_adapters(rt: Runtime):
    """Lifespan: follow the adapter registry (hot-swap) while the server runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        rt.service.adapters.start()
        try:
            yield
        finally:
            rt.service.adapters.stop()

    return lifespan


def build_server(rt: Runtime):
    """The ASGI app: /v1 API routes, /docs, /healthz, and the Gradio app at "/"."""
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    from chat.web.app import build_app  # Gradio: loaded only where a server is built

    cfg = rt.cfg
    app = FastAPI(title="Learning Chat", version="0.1.0", lifespan=_watch_adapters(rt),
                  description="An OpenAI-compatible chat API with RAG and feedback; the web "
                  "app is served at /.")
    install_api(app, rt)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True}

    blocks = build_app(rt)
    accounts = cfg.auth == "accounts"
    if accounts:  # guessing slowed per client address, never a lockout by name
        app.add_middleware(LoginGuard, throttle=LoginThrottle(), allowed_origins=cfg.origins,
                           trust_forwarded=cfg.trust_proxy)
    # The parent app's own CORS policy replaces Gradio's, which answers any localhost origin
    # with Allow-Credentials: only the app's own origin (and CHAT_ALLOWED_ORIGINS) may make
    # credentialed browser requests.
    app.add_middleware(CORSMiddleware, allow_origins=cfg.origins,
                       allow_credentials=bool(cfg.origins),
                       allow_methods=["*"], allow_headers=["*"])
    # With accounts, the Gradio login makes gr.Request.username the identity on every row.
    # show_error=False: a gr.Error's message still reaches the browser, but the text of an
    # unexpected exception (which may name a file or a query) does not.
    # Gradio's /upload is open to every logged-in user: the size limit stops a file there,
    # before it is written to disk, not only later in the admin console.
    gr.mount_gradio_app(
        app, blocks, path="/", auth=login_checker(rt.store) if accounts else None,
        auth_message="Log in with your Learning Chat account." if accounts else None,
        show_error=False, max_file_size=int(cfg.max_file_mb * 1024 * 1024),
        blocked_paths=[str(cfg.data_dir)], js=PAGE_JS, css=PAGE_CSS)
    # mount_gradio_app leaves has_launched unset, and Gradio skips its check of the file paths
    # in a handler's inputs until it is set (processing_utils._check_allowed): without this,
    # any path a client names in a Chatbot or File value is copied to the cache and served.
    blocks.has_launched = True
    app.add_middleware(DownloadGuard, downloads=rt.downloads,
                       user_of=_web_login(app, rt.authorizer))
    return app


def _web_login(app, authorizer: Authorizer) -> Callable[[dict], str | None]:
    """The login name behind an HTTP request to the web app (Gradio's session cookie)."""
    if authorizer.open:
        return lambda scope: OPEN_USER
    web = next(r.app for r in app.routes if hasattr(getattr(r, "app", None), "tokens"))

    def user_of(scope: dict) -> str | None:
        cookies = HTTPConnection(scope).cookies
        token = (cookies.get(f"access-token-{web.cookie_id}")
                 or cookies.get(f"access-token-unsecure-{web.cookie_id}"))
        return web.tokens.get(token)

    return user_of


def serve(cfg: Config, host: str, port: int) -> None:
    """Check the auth mode, load everything once, then run uvicorn until interrupted."""
    import uvicorn

    check_auth_mode(cfg, host, Store(cfg.db_path))  # fail before loading the model
    rt = build_runtime(cfg)
    rt.service.adapters.start()  # follow activations made elsewhere (CLI, admin) within ~1 s
    if cfg.top_k > 0:  # CHAT_TOP_K=0: no retrieval
        print("Loading the embedder and the knowledge base index...", flush=True)
        rt.service.retriever.refresh()  # so the first question does not pay for it
    app = build_server(rt)
    mode = "accounts (login required)" if cfg.auth == "accounts" else "open single-user"
    print(f"Serving on http://{host}:{port} ({mode}); API docs at http://{host}:{port}/docs",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
