"""What the web-app handler tests share: a context around the tiny model, asking, a like."""

from types import SimpleNamespace

import pytest

from chat.app_chat import AppContext, new_session, respond
from chat.config import replace
from chat.service import ChatService


@pytest.fixture
def ctx(cfg, store, tiny_engine):
    """The real store and service around a tiny random model: the words do not matter here."""
    return AppContext(ChatService(replace(cfg, max_new_tokens=6), tiny_engine, store))


def ask(ctx, question, history=None, session=None):
    *_, (_, history, session) = respond(ctx, question, history or [], session or new_session())
    return history, session


def like_event(index, liked):
    return SimpleNamespace(index=index, value=None, liked=liked)
