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


@pytest.mark.parametrize("name,value,message", [
    ("DTYPE", "bogus", "dtype (CHAT_DTYPE) must be auto, float32, bfloat16 or float16"),
    ("FAST_PATH", "turbo", "fast_path (CHAT_FAST_PATH) must be auto, off, fp16, int8, bf16, "
                           "fp32, got 'turbo'"),
    ("AUTH", "bogus", "auth (CHAT_AUTH) must be open or accounts, got 'bogus'"),
    ("DEVICE", "gpu", "device (CHAT_DEVICE) must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("MIN_SCORE", "nan", "min_score (CHAT_MIN_SCORE) must be a cosine similarity"),
    ("MAX_HISTORY_TURNS", "-1", "must be 0 (no history) or more"),
    ("TOP_K", "-3", "top_k (CHAT_TOP_K) must be 0 (no retrieval) or more"),
    ("WATCH_INTERVAL_S", "-1", "must be a positive number of seconds"),
    ("MAX_FILE_MB", "nan", "must be a positive number of MiB"),
    ("MAX_MESSAGE_CHARS", "0", "must be at least 1"),
    ("HNSW_EF", "0", "hnsw_ef (CHAT_HNSW_EF) must be at least 1"),
    ("PORT", "abc", "CHAT_PORT must be an integer, got 'abc'"),
    ("TEMPERATURE", "warm", "CHAT_TEMPERATURE must be a number"),
])
def test_every_setting_is_checked_when_read(monkeypatch, name, value, message):
    monkeypatch.setenv(f"CHAT_{name}", value)
    with pytest.raises(ValueError) as err:
        load_config()
    assert message in str(err.value)


def test_good_device_values_pass(monkeypatch):
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert load_config(device=device).device == device


def test_no_history_means_none_not_all(cfg, store, tiny_engine):
    from tests.wiring_support import wired

    history = [{"role": r, "content": f"{r} {i}"} for i in range(5) for r in ("user", "assistant")]
    kept = wired(cfg, tiny_engine, store, max_history_turns=0).service.check_history
    assert kept(history) == []
    two = wired(cfg, tiny_engine, store, max_history_turns=2).service.check_history
    assert two(history) == history[-4:]


def test_data_dir_comes_from_env(data_dir):
    assert load_config().data_dir == data_dir


def test_a_relative_model_folder_becomes_absolute(tmp_path, monkeypatch):
    """Like the data folder: the training child would look for the model in the checkout."""
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config(base_model="my-model").base_model == str(tmp_path.resolve() / "my-model")
    assert load_config(base_model="org/not-here").base_model == "org/not-here"  # a hub id


def test_relative_folders_become_absolute(tmp_path, monkeypatch):
    """The training process runs from the checkout: a relative data folder would name another
    database there than the server's."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(data_dir="data", model_cache="~/models")
    assert cfg.data_dir == tmp_path.resolve() / "data"
    assert cfg.db_path == tmp_path.resolve() / "data" / "chat.db"
    assert cfg.adapters_dir == tmp_path.resolve() / "data" / "adapters"
    assert cfg.model_cache == Path.home().resolve() / "models"
