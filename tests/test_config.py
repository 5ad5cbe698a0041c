from pathlib import Path

import pytest

from chat.config import load_config


def test_env_overrides_defaults_and_flags_override_env(monkeypatch):
    monkeypatch.setenv("CHAT_MAX_NEW_TOKENS", "64")
    monkeypatch.setenv("CHAT_TEMPERATURE", "0.5")
    cfg = load_config()
    assert cfg.max_new_tokens == 64 and cfg.temperature == 0.5
    cfg = load_config(max_new_tokens=32, data_dir="elsewhere")
    assert cfg.max_new_tokens == 32 and cfg.data_dir == Path("elsewhere").resolve()


def test_invalid_values_name_the_field(monkeypatch):
    monkeypatch.setenv("CHAT_TOP_P", "1.5")
    with pytest.raises(ValueError, match="top_p"):
        load_config()


def test_data_dir_comes_from_env(data_dir):
    assert load_config().data_dir == data_dir


def test_relative_folders_become_absolute(tmp_path, monkeypatch):
    """The training process runs from the checkout: a relative data folder would name another
    database there than the server's."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(data_dir="data", model_cache="~/models")
    assert cfg.data_dir == tmp_path.resolve() / "data"
    assert cfg.db_path == tmp_path.resolve() / "data" / "chat.db"
    assert cfg.adapters_dir == tmp_path.resolve() / "data" / "adapters"
    assert cfg.model_cache == Path.home().resolve() / "models"
