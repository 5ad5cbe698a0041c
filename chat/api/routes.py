"""The OpenAI-compatible HTTP API: chat completions (RAG as in the web app), models, feedback.

Every route authenticates with `Authorization: Bearer KEY` (keys from `launch.py users key`),
answers errors as `{"error": {"message", "type"}}` with a 4xx status, and goes through the same
ChatService (retrieval, prompt profile, adapter, rate limit, recording) as the web app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chat import auth
from chat.api import feedback as feedback_api
from chat.api.completions import complete_chat
from chat.api.errors import BodyLimit, Unauthorized, error_response, install_error_handlers
from chat.api.models import list_models
from chat.api.schemas import ChatRequest, FeedbackRequest
from chat.runtime import Runtime


def key_user(rt: Runtime) -> Callable[..., Awaitable[str]]:
    """The dependency that names the caller from its API key (401 without a known one)."""
    bearer = HTTPBearer(auto_error=False, description="an API key from `launch.py users key`")

    # async (one indexed lookup): a sync dependency would wait for a worker thread first
    async def current_user(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        user = auth.user_for_key(rt.store, creds.credentials if creds else None)
        if user is None:
            raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer KEY' "
                               "with a key from `launch.py users key NAME`")
        return user

    return current_user


def build_router(rt: Runtime) -> APIRouter:
    """The /v1 routes bound to one Runtime."""
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible API"])
    current_user = key_user(rt)

    @router.post("/chat/completions", summary="Chat completion (streaming or not), with RAG")
    async def chat_completions(req: ChatRequest, user: str = Depends(current_user)):
        return await complete_chat(rt, req, user)

    @router.get("/models", summary="The base model and every servable adapter version")
    def models(user: str = Depends(current_user)):
        return {"object": "list", "data": list_models(rt.service)}

    @router.post("/feedback", status_code=201,
                 summary="Rate, correct or compare answers this API returned")
    def feedback(req: FeedbackRequest, user: str = Depends(current_user)):
        return feedback_api.record(rt.service, user, req)

    @router.get("/admin/users", summary="Accounts and roles (admins only)")
    def admin_users(user: str = Depends(current_user)):
        rt.authorizer.require(user, "admin")
        return {"object": "list", "data": auth.list_users(rt.store)}

    return router


def _no_such_route(router: APIRouter):
    async def no_such_route(request: Request) -> Response:
        path = request.url.path
        twin = path[:-1] if path.endswith("/") else path + "/"
        if any(r.path_regex.match(twin) for r in router.routes):
            # what Starlette does for a route without this catch-all: the same path, redirected
            return RedirectResponse(request.url.replace(path=twin), status_code=307)
        allowed = sorted({m for r in router.routes if r.path_regex.match(path)
                          for m in r.methods})
        if allowed:
            return error_response(405, f"{request.method} is not allowed on {path}; use "
                                  f"{', '.join(allowed)}", "invalid_request_error",
                                  headers={"Allow": ", ".join(allowed)})
        return error_response(404, f"no such endpoint: {request.method} {path} (see /docs)",
                              "invalid_request_error")
    return no_such_route


def install_api(app: FastAPI, rt: Runtime) -> None:
    """Add the /v1 routes and the JSON error handlers to `app`."""
    install_error_handlers(app)
    router = build_router(rt)
    app.include_router(router)
    # last under /v1: an unknown path or method gets the API's error shape, not the 404 of
    # the web app mounted at /
    app.add_api_route("/v1/{path:path}", _no_such_route(router), include_in_schema=False,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    app.add_middleware(BodyLimit)
