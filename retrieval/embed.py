"""The sentence-transformers embedder: loaded once per process, lazily, shared by all threads."""

from __future__ import annotations

import sys
import threading

import numpy as np

from chat.config import Config
from chat.engine.loading import load_embedder, pick_device, resolve_embedder

_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def _shared_model(cfg: Config):
    """One SentenceTransformer per (source, device) per process: runtimes and tests share it."""
    key = (resolve_embedder(cfg), pick_device(cfg.device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_embedder(cfg)
        return _MODELS[key]


class Embedder:
    """Unit-normalised float32 vectors and token counts from the configured embedder."""

    def __init__(self, cfg: Config, batch_size: int = 32):
        self.cfg = cfg
        self.name = cfg.embedder
        self.batch_size = batch_size
        self._model = None
        # HF fast tokenizers raise "Already borrowed" when one instance is used by two threads
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            self._model = _shared_model(self.cfg)
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Tokens per input the model sees (inputs beyond it are truncated), minus [CLS]/[SEP]."""
        return int(self.model.max_seq_length) - 2

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """Embed in batches; a tqdm bar on a terminal when there are many texts."""
        if progress is None:
            progress = sys.stderr.isatty() and len(texts) > 4 * self.batch_size
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="chunk")
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            with self._lock:
                out[start:start + len(batch)] = self.model.encode(
                    batch, batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    # ------------------------------------------------------------------ tokenizer (chunking)

    def count(self, texts: list[str]) -> list[int]:
        """Tokens per text, without special tokens."""
        if not texts:
            return []
        with self._lock:
            enc = self.model.tokenizer(texts, add_special_tokens=False, truncation=False,
                                       verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut one over-long text into windows of at most max_tokens tokens (by char offsets)."""
        with self._lock:
            enc = self.model.tokenizer(text, add_special_tokens=False, truncation=False,
                                       return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        pieces, i = [], 0
        while i < len(offsets):
            j = min(i + max_tokens, len(offsets))
            # back off to a word start (a gap before the token) so no word is cut in two
            while i + 1 < j < len(offsets) and offsets[j][0] == offsets[j - 1][1]:
                j -= 1
            if j == i + 1 and i + max_tokens < len(offsets):
                j = i + max_tokens  # one word longer than a window: cut it anyway
            pieces.append(text[offsets[i][0]:offsets[j - 1][1]].strip())
            i = j
        return [p for p in pieces if p]
