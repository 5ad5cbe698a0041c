"""AdapterPool: which LoRA version serves each request; watches the registry for hot-swaps."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from chat.config import Config
from chat.engine.engine import BASE
from chat.errors import BadInput
from feedback.store import Store
from training import registry

log = logging.getLogger(__name__)


class AdapterPool:
    """Loads versions into the engine under their own names; the pointer moves only after."""

    def __init__(self, store, engine, cfg, keep: int = 3,
                 autotrain: Callable[[Store, Config], int | None] | None = None):
        self.store = store
        self.engine = engine
        self.cfg = cfg
        # the serving side only watches; what starts a run is training's (runtime wires it)
        self.autotrain = autotrain
        self.keep = keep  # active + previous ones: instant rollback, in-flight answers safe
        self.active: str | None = None
        self._loaded: OrderedDict[str, None] = OrderedDict()  # LRU of loaded versions
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ serving

    def resolve(self, pinned: str | None = None) -> str | None:
        """The version for one request (None: the base model); unknown versions are errors."""
        if pinned in (None, ""):
            if self._thread is None:  # no watcher (CLI): read the registry now
                self.refresh()
            return self.active
        if pinned == BASE:
            return BASE
        row = registry.get(self.store, pinned)  # NotFound / BadInput with a clear message
        if row["status"] in ("rejected", "training"):
            raise BadInput(f"adapter {pinned} is {row['status']} and cannot serve answers")
        if row["erased_data"]:
            raise BadInput(f"adapter {pinned} was trained on feedback of a forgotten user and "
                           "cannot serve answers")
        self._ensure_loaded(pinned, row["path"])
        return pinned

    def _ensure_loaded(self, version: str, path: str) -> None:
        with self._lock:
            if version not in self._loaded:
                self.engine.load_adapter(version, path)
            self._loaded[version] = None
            self._loaded.move_to_end(version)
            self._evict()

    def _evict(self) -> None:
        # Never unload the active one; the oldest others go once more than `keep` are loaded.
        while len(self._loaded) > self.keep:
            victim = next((v for v in self._loaded if v != self.active), None)
            if victim is None:
                return
            self._loaded.pop(victim)
            self.engine.unload_adapter(victim)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    # ------------------------------------------------------------------ watching

    def refresh(self) -> str | None:
        """Follow the registry: load a newly active version first, then switch the pointer."""
        row = registry.active_row(self.store)
        version = row["version"] if row else None
        if version != self.active:
            if row is not None:
                self._ensure_loaded(version, row["path"])
            log.info("adapter %s -> %s", self.active, version)
            self.active = version
        return self.active

    def start(self) -> AdapterPool:
        """Poll the registry every cfg.watch_interval_s in a daemon thread."""
        if self._thread is None:
            self.refresh()
            self._thread = threading.Thread(target=self._watch, name="adapter-watch",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        last_auto = 0.0
        while not self._stop.wait(self.cfg.watch_interval_s):
            try:
                self.refresh()
            except Exception:  # a bad folder must not kill the watcher: keep serving
                log.exception("adapter refresh failed; still serving %s", self.active)
            if self.autotrain and self.cfg.auto_train_every \
                    and time.monotonic() - last_auto > 30:
                last_auto = time.monotonic()
                self._autotrain()

    def _autotrain(self) -> None:
        try:
            run_id = self.autotrain(self.store, self.cfg)
            if run_id is not None:
                log.info("started training run %s (new feedback)", run_id)
        except Exception:
            log.exception("automatic training trigger failed")
