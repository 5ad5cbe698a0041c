"""The one generation seam: messages in, streamed text out, on the base model or a named LoRA."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chat.engine.context import fit_messages
from chat.engine.fast_mode import FAST_SLOTS, choose_fast_mode, gpu_auto
from chat.engine.loading import load_base_model
from chat.engine.sampling import sample
from chat.errors import BadInput, NotFound
from chat.sanitize import inert, special_token_pattern

BASE = "base"  # the name under which requests ask for no adapter

log = logging.getLogger(__name__)


@dataclass
class GenParams:
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int | None = None
    # loop control over the answer's own tokens (chat/engine/sampling.py); neutral here, the
    # server's defaults come from Config
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0  # 0: off

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 5:
            raise BadInput(f"temperature must be within [0, 5], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BadInput(f"top_p must be within (0, 1], got {self.top_p}")
        if not 1 <= self.max_new_tokens <= 4096:
            raise BadInput(f"max_new_tokens must be within [1, 4096], got {self.max_new_tokens}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise BadInput(f"seed must be within [0, 2**63), got {self.seed}")
        if not 1 <= self.repetition_penalty <= 2:
            raise BadInput("repetition_penalty must be within [1, 2], got "
                           f"{self.repetition_penalty}")
        if self.no_repeat_ngram != 0 and not 2 <= self.no_repeat_ngram <= 64:
            raise BadInput(f"no_repeat_ngram must be 0 (off) or within [2, 64], got "
                           f"{self.no_repeat_ngram}")


class Engine:
    """Base model + named LoRA adapters, shared by every user; one decode step at a time."""

    def __init__(self, model, tokenizer, device: str = "cpu", max_context_tokens: int = 2048,
                 fast_path: str = "auto", block_kernels: bool = True,
                 prompt_blocks: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_context_tokens = max_context_tokens
        self.adapters: dict[str, str] = {}  # name -> folder
        # Steps of concurrent requests interleave under this lock; adapter selection is
        # model-global in peft, so it is set inside the lock for every step.
        self._lock = threading.RLock()
        extra = getattr(model.generation_config, "eos_token_id", None)
        extra = extra if isinstance(extra, (list, tuple)) else [extra]
        eos = {tokenizer.eos_token_id, *extra}
        self.stop_ids = {i for i in eos if i is not None}
        self.fast_mode = choose_fast_mode(fast_path, device, lambda: gpu_auto(model, device))
        self.block_kernels, self.prompt_blocks = block_kernels, prompt_blocks
        self._specials = special_token_pattern(tokenizer)
        # adapter name -> merged FastModel (None: this version cannot use the fast path)
        self._fast: OrderedDict[str, object] = OrderedDict()

    @classmethod
    def from_config(cls, cfg) -> Engine:
        model, tok, device = load_base_model(cfg)
        return cls(model, tok, device, cfg.max_context_tokens,
                   getattr(cfg, "fast_path", "auto"), getattr(cfg, "block_kernels", True),
                   getattr(cfg, "prompt_blocks", True))

    # ------------------------------------------------------------------ prompt

    def encode(self, messages: list[dict]) -> list[int]:
        """The prompt's token ids. Only the template makes control tokens: the same strings
        inside a message (from a document, a question, an answer) are made inert first."""
        safe = [{**m, "content": inert(m["content"], self._specials)} for m in messages]
        out = self.tokenizer.apply_chat_template(
            safe, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(out["input_ids"])

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens in each text (no special tokens), counted as encode() sees them."""
        if not texts:
            return []
        texts = [inert(t, self._specials) for t in texts]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def fit_messages(self, messages: list[dict], max_new_tokens: int,
                     keep_head: int = 0) -> list[dict]:
        """Drop the oldest history turns until the prompt fits (chat/engine/context.py)."""
        return fit_messages(self, messages, max_new_tokens, keep_head)

    # ------------------------------------------------------------------ adapters

    def load_adapter(self, name: str, folder: str | Path) -> None:
        """Load a LoRA adapter (safetensors only) under a unique name; cheap if already there.
        The same name from another folder (another registry sharing this engine) replaces it."""
        from peft import PeftModel

        folder = Path(folder)
        if name in self.adapters:
            if Path(self.adapters[name]).resolve() == folder.resolve():
                return
            self.unload_adapter(name)
        if not (folder / "adapter_model.safetensors").exists():
            raise NotFound(f"adapter {name}: no adapter_model.safetensors in {folder}")
        with self._lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(folder), adapter_name=name, use_safetensors=True)
            else:
                self.model = PeftModel.from_pretrained(
                    self.model, str(folder), adapter_name=name, use_safetensors=True)
            self.model.eval()
            self.adapters[name] = str(folder)

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            self._fast.pop(name, None)  # in-flight requests keep their own reference
            if name in self.adapters:
                self.model.delete_adapter(name)
                del self.adapters[name]
                if not self.adapters:
                    # no adapter left: serve the plain model (peft would still point at the
                    # deleted one and fail on the next request)
                    self.model = self.model.base_model.model
                elif self.model.active_adapter not in self.adapters:
                    self.model.set_adapter(next(iter(self.adapters)))

    def kernels(self, name: str | None = None) -> dict[str, str]:
        """Which weights the decode steps and prompts of version `name` read."""
        fast = self.prepare(name)
        if fast is None:
            return {"decode": "transformers/peft", "prompts": "transformers/peft"}
        return fast.kernels

    def prepare(self, name: str | None = None):
        """Build the merged fast copy of a version now (call it at activation time)."""
        from chat.engine.fastpath import FastModel, Unsupported

        key = name or BASE
        if self.fast_mode == "off":
            return None
        with self._lock:
            if key in self._fast:
                self._fast.move_to_end(key)
                return self._fast[key]
            if key != BASE and key not in self.adapters:
                raise NotFound(f"adapter {key} is not loaded")
            try:
                fast = FastModel(self.model, None if key == BASE else key, self.fast_mode,
                                 self.block_kernels, self.prompt_blocks)
                log.info("fast path for %s: %s", key, fast.kernels)
            except Unsupported as exc:
                log.info("fast path off for %s: %s", key, exc)
                fast = None
            self._fast[key] = fast
            while len(self._fast) > FAST_SLOTS:
                self._fast.popitem(last=False)
            return fast

    @contextmanager
    def _adapter(self, name: str | None):
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            if name not in (None, BASE):
                raise NotFound(f"adapter {name} is not loaded")
            yield
            return
        if name in (None, BASE):
            with self.model.disable_adapter():
                yield
            return
        if name not in self.adapters:
            raise NotFound(f"adapter {name} is not loaded")
        if self.model.active_adapter != name:
            self.model.set_adapter(name)
        yield

    # ------------------------------------------------------------------ generation

    def generate(
        self, messages: list[dict], params: GenParams | None = None, adapter: str | None = None,
        cancel: threading.Event | None = None, conversation=None,
    ) -> Iterator[str]:
        """Stream the answer as text pieces. Setting `cancel` stops after the current token.
        `conversation` (any hashable id) lets a follow-up start from this prompt's cache."""
        params = params or GenParams()
        ids = self.encode(self.fit_messages(messages, params.max_new_tokens))
        yield from self._detokenize(self.generate_ids(ids, params, adapter, cancel, conversation))

    def generate_ids(self, ids, params: GenParams, adapter=None, cancel=None,
                     conversation=None) -> Iterator[int]:
        """Stream token ids; the fast path when this version has one, else transformers/peft."""
        fast = self.prepare(adapter)
        if fast is not None:
            return self._generate_fast(fast, ids, params, cancel, conversation)
        return self._generate_hf(ids, params, adapter, cancel)

    def _generate_fast(self, fast, ids, params: GenParams, cancel, conversation) -> Iterator[int]:
        import torch

        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        if cancel is not None and cancel.is_set():
            return
        with self._lock, torch.inference_mode():
            cache, logits = fast.prefill(list(ids), len(ids) + params.max_new_tokens,
                                         conversation)
        answer: list[int] = []
        for i in range(params.max_new_tokens):
            token = sample(logits.cpu(), params, gen, answer)  # sampled with a CPU generator
            if token in self.stop_ids:
                return
            answer.append(token)
            yield token
            if i + 1 == params.max_new_tokens or (cancel is not None and cancel.is_set()):
                return
            with self._lock, torch.inference_mode():
                logits = fast.forward([token], cache)

    def _generate_hf(self, ids, params: GenParams, adapter, cancel) -> Iterator[int]:
        import torch
        from transformers import DynamicCache

        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        cache = DynamicCache()
        step_input = torch.tensor([ids], device=self.device)
        answer: list[int] = []
        for _ in range(params.max_new_tokens):
            if cancel is not None and cancel.is_set():
                return
            with self._lock, torch.inference_mode(), self._adapter(adapter):
                logits = self.model(
                    input_ids=step_input, past_key_values=cache, use_cache=True,
                    logits_to_keep=1).logits[0, -1]
            token = sample(logits.float().cpu(), params, gen, answer)
            if token in self.stop_ids:
                return
            answer.append(token)
            yield token
            step_input = torch.tensor([[token]], device=self.device)

    def _detokenize(self, tokens: Iterator[int]) -> Iterator[str]:
        """Turn tokens into text pieces, holding back incomplete UTF-8 sequences."""
        ids: list[int] = []
        emitted = ""
        for token in tokens:
            ids.append(token)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            if len(text) > len(emitted):
                yield text[len(emitted):]
                emitted = text

    def complete(self, messages: list[dict], params: GenParams | None = None,
                 adapter: str | None = None) -> str:
        return "".join(self.generate(messages, params, adapter))
