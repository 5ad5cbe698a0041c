"""What the web-app handler tests share: a runtime around the tiny model, asking, a like."""

from types import SimpleNamespace

import pytest

from chat.web.chat_handlers import new_session, respond
from tests.wiring_support import wired


@pytest.fixture
def ctx(cfg, store, tiny_engine):
    """The real store and service around a tiny random model: the words do not matter here."""
    return wired(cfg, tiny_engine, store, max_new_tokens=6)


@pytest.fixture
def accounts_ctx(ctx):
    """The same handlers behind logins (CHAT_AUTH=accounts): `login(name)` is the request."""
    return wired(ctx.cfg, ctx.engine, ctx.store, auth="accounts")


def login(name: str) -> SimpleNamespace:
    """What Gradio hands a handler for a request of a logged-in user."""
    return SimpleNamespace(username=name)


def ask(ctx, question, history=None, session=None, request=None):
    *_, (_, history, session) = respond(ctx, question, history or [], session or new_session(),
                                        request)
    return history, session


def like_event(index, liked):
    return SimpleNamespace(index=index, value=None, liked=liked)
