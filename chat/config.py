"""One typed configuration: defaults, then CHAT_* environment variables, then CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

# Sentinels for the models that ship inside PyPI wheels (no hub needed).
DEFAULT_BASE_MODEL = "smollm2-135m"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely. "
    "When sources are given, use them and cite them as [n]."
)


def _at_least(low: float):
    return lambda v: v >= low


def _within(low: float, high: float):
    return lambda v: low <= v <= high  # NaN fails every comparison, so it is refused too


def _finite_positive(v: float) -> bool:
    return 0 < v < math.inf


FAST_PATH_MODES = ("fp16", "int8", "bf16", "fp32")  # the weight kernels of chat/engine/fastpath.py
FAST_PATH_SETTINGS = ("auto", "off", *FAST_PATH_MODES)
AUTH_MODES = ("open", "accounts")

# Checked when the configuration is made, so a typo in a CHAT_* variable is one line naming
# it, not a traceback at model load or a setting that silently does something else
_RULES = [
    ("device", lambda v: v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v),
     "auto, cpu, cuda or cuda:N"),
    ("dtype", lambda v: v in ("auto", "float32", "bfloat16", "float16"),
     "auto, float32, bfloat16 or float16"),
    ("fast_path", lambda v: v.lower() in FAST_PATH_SETTINGS, ", ".join(FAST_PATH_SETTINGS)),
    ("auth", lambda v: v in AUTH_MODES, " or ".join(AUTH_MODES)),
    ("allowed_origins", lambda v: all(re.fullmatch(r"https?://[^/\s,]+/?", o.strip())
                                      for o in v.split(",") if o.strip()),
     "comma-separated origins like https://chat.example.com"),
    ("temperature", _within(0, 5), "within [0, 5]"),
    ("top_p", lambda v: 0 < v <= 1, "within (0, 1]"),
    ("max_new_tokens", _at_least(1), "at least 1"),
    ("repetition_penalty", _within(1, 2), "within [1, 2] (1: off)"),
    ("no_repeat_ngram", lambda v: v == 0 or 2 <= v <= 64, "0 (off) or within [2, 64]"),
    ("max_message_chars", _at_least(1), "at least 1"),
    ("max_history_turns", _at_least(0), "0 (no history) or more"),
    ("port", _within(1, 65535), "within [1, 65535]"),
    ("top_k", _at_least(0), "0 (no retrieval) or more"),
    ("min_score", _within(-1, 1), "a cosine similarity within [-1, 1]"),
    ("source_tokens", _at_least(0), "0 (whole chunks) or positive"),
    ("chunk_tokens", _at_least(16), "at least 16"),
    ("chunk_overlap", _at_least(0), "0 or more"),
    ("hnsw_m", _at_least(2), "at least 2"),
    ("hnsw_ef_construction", _at_least(1), "at least 1"),
    ("hnsw_ef", _at_least(1), "at least 1"),
    ("max_file_mb", _finite_positive, "a positive number of MiB"),
    ("rate_limit_per_minute", _at_least(0), "0 (no limit) or more"),
    ("max_queue", _at_least(1), "at least 1"),
    ("watch_interval_s", _finite_positive, "a positive number of seconds"),
    ("auto_train_every", _at_least(0), "0 (off) or more"),
    ("train_max_steps", _at_least(0), "0 (the run's epochs) or more"),
]


@dataclass
class Config:
    data_dir: Path = field(default=Path("data"), metadata={"help": "folder for all state"})
    base_model: str = field(default=DEFAULT_BASE_MODEL, metadata={"help": "HF id or path"})
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "HF id or path"})
    model_cache: Path | None = field(
        default=None, metadata={"help": "converted model cache (default DATA_DIR/models)"}
    )
    device: str = field(default="auto", metadata={"help": "auto|cpu|cuda"})
    dtype: str = field(default="auto", metadata={"help": "auto|float32|bfloat16|float16"})
    fast_path: str = field(
        default="auto", metadata={"help": "auto (CPU: fp16; GPU: fp32 or bf16 copies by memory)"
                                          "|off|fp16|int8 (CPU only)|bf16|fp32"})
    block_kernels: bool = field(default=True, metadata={
        "help": "CPU decode reads weights that lie exactly on a GGUF 4/8-bit grid (the shipped "
                "model's) through exact block kernels built with the C compiler (0: off)"})
    prompt_blocks: bool = field(default=True, metadata={
        "help": "prompts read those blocks too, each block of 32 inputs rounded to int16 "
                "(AVX512-VNNI; 0: prompts read fp32 weights, exact but ~1.35x slower)"})
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float = field(default=0.0, metadata={"help": "0 means greedy"})
    top_p: float = 0.9
    max_new_tokens: int = 256
    # loop control over the answer's own tokens; chosen with `bench quality`
    # (docs/performance.md#loops-and-cut-offs-bench-quality)
    repetition_penalty: float = field(default=1.1, metadata={
        "help": "CTRL repetition penalty on tokens the answer already used (1: off)"})
    no_repeat_ngram: int = field(default=0, metadata={
        "help": "rule out a token that would repeat an n-gram of the answer (0: off)"})
    max_context_tokens: int = field(default=2048, metadata={"help": "prompt + answer budget"})
    max_message_chars: int = 4000
    max_history_turns: int = 40
    host: str = "127.0.0.1"
    port: int = 7860
    # retrieval
    top_k: int = 4
    # all-MiniLM-L6-v2 on the shipped knowledge base: off-topic questions scored 0.05-0.26,
    # on-topic ones mostly 0.38-0.74 (measured by hand; tests/test_retrieval.py pins both sides)
    min_score: float = field(default=0.3, metadata={"help": "cosine similarity floor"})
    source_tokens: int = field(default=64, metadata={
        "help": "model tokens of each retrieved chunk put in the prompt: its sentences closest "
                "to the question (0: whole chunks)"})
    chunk_tokens: int = 240
    chunk_overlap: int = 40
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef: int = 64
    max_file_mb: float = 20.0
    # limits
    rate_limit_per_minute: int = 30
    max_queue: int = field(default=64, metadata={"help": "API requests in flight at once"})
    auth: str = field(default="open", metadata={"help": "open (single user) | accounts"})
    trust_proxy: bool = field(default=False, metadata={
        "help": "take the client address from X-Forwarded-For (only behind a proxy that sets "
                "it): the login throttle counts per client, not per proxy"})
    allowed_origins: str = field(default="", metadata={
        "help": "comma-separated origins (https://chat.example.com) besides the app's own that "
                "may make credentialed browser requests; empty: the app's own only"})
    watch_interval_s: float = field(default=1.0, metadata={"help": "adapter registry poll"})
    auto_train_every: int = field(
        default=0, metadata={"help": "start a training run after N new feedback items (0: off)"})
    train_max_steps: int = field(
        default=0, metadata={"help": "cap on optimiser steps of every run (0: the run's epochs)"})

    def __post_init__(self) -> None:
        # absolute: the training child runs from the checkout (cwd=ROOT), and a relative
        # folder would name another database there than the server's
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.model_cache is not None:
            self.model_cache = Path(self.model_cache).expanduser().resolve()
        local = Path(self.base_model).expanduser()
        if self.base_model and local.is_dir():  # a model folder (an HF id is not one here)
            self.base_model = str(local.resolve())
        for name, ok, what in _RULES:
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"{name} (CHAT_{name.upper()}) must be {what}, got {value!r}")
        if self.max_context_tokens <= self.max_new_tokens:
            raise ValueError("max_context_tokens must exceed max_new_tokens")
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def cache_dir(self) -> Path:
        return self.model_cache or self.data_dir / "models"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chat.db"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"


def positive_int(text: str) -> int:
    """argparse type for counts: a whole number >= 1, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _coerce(value: str, kind: type | str):
    kind = str(kind)
    if "bool" in kind:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if "int" in kind:
        return int(value)
    if "float" in kind:
        return float(value)
    if "Path" in kind:
        return Path(value)
    return value


def _from_env(name: str, kind) -> object:
    value = os.environ[f"CHAT_{name.upper()}"]
    try:
        return _coerce(value, kind)
    except ValueError:
        number = "an integer" if "int" in str(kind) else "a number"
        raise ValueError(f"CHAT_{name.upper()} must be {number}, got {value!r}") from None


def load_config(**overrides) -> Config:
    """Defaults, then CHAT_<FIELD> env vars, then non-None keyword overrides (CLI flags)."""
    values = {}
    for f in fields(Config):
        if os.environ.get(f"CHAT_{f.name.upper()}", "") != "":
            values[f.name] = _from_env(f.name, f.type)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)


def replace(cfg: Config, **changes) -> Config:
    return dataclasses.replace(cfg, **changes)
