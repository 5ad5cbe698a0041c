import pytest

from chat.web.app import build_app
from chat.web.views import text_of as _text
from tests.wiring_support import wired


@pytest.fixture
def running_app(cfg, store, real_engine):
    app = build_app(wired(cfg, real_engine, store))
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    yield app
    app.close()


def test_app_answers_through_gradio_client(running_app, store):
    from gradio_client import Client

    client = Client(running_app.local_url, verbose=False)
    _, history = client.predict("What is the capital of France?", [], api_name="/chat")
    assert "Paris" in _text(history[-1]["content"])
    messages = store.query("SELECT role, content FROM messages ORDER BY id")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "Paris" in messages[1]["content"]
