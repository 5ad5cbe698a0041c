"""Serve the web app (and, once it lands, the HTTP API) from one process."""

from __future__ import annotations

from chat.config import Config


def serve(cfg: Config, host: str, port: int) -> None:
    from chat.app import AppContext, build_app
    from chat.runtime import build_runtime

    rt = build_runtime(cfg)
    app = build_app(AppContext(rt.service))
    print(f"Serving on http://{host}:{port}", flush=True)
    app.launch(server_name=host, server_port=port, show_error=True)
