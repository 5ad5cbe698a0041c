"""The models the API serves: the base model, and `BASE@version` for each adapter version a
request may pin (GET /v1/models, and the `model` field of a completion)."""

from __future__ import annotations

from datetime import datetime

from chat.engine.engine import BASE
from chat.errors import NotFound
from chat.service import ChatService
from training import registry


def servable_versions(service: ChatService) -> list[dict]:
    """Adapter versions a request may pin (none until the training loop has produced one)."""
    return registry.servable(service.store)


def model_adapter(service: ChatService, model: str | None) -> str | None:
    """`BASE` -> the active adapter (None), `BASE@base` -> no adapter, `BASE@vN` -> pinned."""
    base = service.cfg.base_model
    if not model or model == base:
        return None
    name, sep, version = model.rpartition("@")
    if not sep or name != base or not version:
        raise NotFound(f"unknown model {model!r}; GET /v1/models lists the served ones")
    if version == BASE:
        return BASE
    known = {row["version"] for row in servable_versions(service)}
    if version not in known:
        raise NotFound(f"unknown adapter version {version!r} of model {base!r}")
    return version


def _epoch(iso: str | None) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp()) if iso else 0
    except ValueError:
        return 0


def list_models(service: ChatService) -> list[dict]:
    base = service.cfg.base_model
    models = [{"id": base, "object": "model", "created": 0, "owned_by": "learning-chat",
               "adapter_version": "active"}]
    versions = servable_versions(service)
    if versions:
        models.append({"id": f"{base}@{BASE}", "object": "model", "created": 0,
                       "owned_by": "learning-chat", "adapter_version": BASE})
    for row in versions:
        models.append({"id": f"{base}@{row['version']}", "object": "model",
                       "created": _epoch(row.get("created_at")), "owned_by": "learning-chat",
                       "adapter_version": row["version"], "status": row.get("status"),
                       "method": row.get("method")})
    return models
