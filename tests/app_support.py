"""What the web-app handler tests share: a context around the tiny model, asking, a like."""

from types import SimpleNamespace

import pytest

from chat.config import replace
from chat.service import ChatService
from chat.web.chat_handlers import AppContext, new_session, respond


@pytest.fixture
def ctx(cfg, store, tiny_engine):
    """The real store and service around a tiny random model: the words do not matter here."""
    return AppContext(ChatService(replace(cfg, max_new_tokens=6), tiny_engine, store))


@pytest.fixture
def accounts_ctx(ctx):
    """The same handlers behind logins (CHAT_AUTH=accounts): `login(name)` is the request."""
    return AppContext(ChatService(replace(ctx.cfg, auth="accounts"), ctx.service.engine,
                                  ctx.store))


def login(name: str) -> SimpleNamespace:
    """What Gradio hands a handler for a request of a logged-in user."""
    return SimpleNamespace(username=name)


def ask(ctx, question, history=None, session=None, request=None):
    *_, (_, history, session) = respond(ctx, question, history or [], session or new_session(),
                                        request)
    return history, session


def like_event(index, liked):
    return SimpleNamespace(index=index, value=None, liked=liked)
