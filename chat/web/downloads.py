"""Files the web app hands to one person (feedback exports): only that person may fetch them.

Gradio serves every file in its cache to every logged-in user who knows the URL
(`/gradio_api/file=...`). A download made here carries a random token in its name; the
token maps to the login that made it, and `DownloadGuard` answers 404 to anyone else. The
temporary folder the file was written in is removed shortly after: Gradio copies a handler's
file output to its cache as soon as the handler returns (and drops that copy after an hour).
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

# anywhere in a request's path: Gradio serves files at /file=PATH and /file/PATH and
# normalises the path, so a suffix ("/", "/.") or another route must not hide the token
_TOKEN = re.compile(r"-dl([0-9a-f]{32})")


class PrivateDownloads:
    """Owner of each download token; each file's temporary folder is removed on a timer."""

    def __init__(self, keep_s: float = 3600.0, copy_grace_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.keep_s = keep_s  # Gradio's cache drops its copy after an hour (delete_cache)
        self.copy_grace_s = copy_grace_s  # time for Gradio to copy it (it does so at once)
        self.clock = clock
        self._owners: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def new_file(self, owner: str, stem: str, suffix: str) -> Path:
        """A fresh path `<tmp>/<stem>-dl<token><suffix>` that only `owner` may download."""
        token = secrets.token_hex(16)
        folder = Path(tempfile.mkdtemp(prefix="download-"))
        with self._lock:
            self._forget_expired()
            self._owners[token] = (owner, self.clock())
        remove = threading.Timer(self.copy_grace_s, shutil.rmtree, (folder,),
                                 {"ignore_errors": True})
        remove.daemon = True
        remove.start()
        return folder / f"{stem}-dl{token}{suffix}"

    def owner_of(self, path: str) -> str | None:
        """The login a download belongs to; None for a path that is not a download."""
        match = _TOKEN.search(path)
        if match is None:
            return None
        with self._lock:
            entry = self._owners.get(match.group(1))
        return entry[0] if entry else ""  # an expired or unknown token belongs to nobody

    def _forget_expired(self) -> None:
        now = self.clock()
        for token in [t for t, (_, at) in self._owners.items() if now - at > self.keep_s]:
            del self._owners[token]


class DownloadGuard:
    """ASGI middleware: a download is served only to the login that made it (404 otherwise,
    so its existence is not confirmed)."""

    def __init__(self, app, downloads: PrivateDownloads,
                 user_of: Callable[[dict], str | None]):
        self.app = app
        self.downloads = downloads
        self.user_of = user_of

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            owner = self.downloads.owner_of(scope["path"] + "?" + _query(scope))
            if owner is not None and (not owner or self.user_of(scope) != owner):
                await _not_found(send)
                return
        await self.app(scope, receive, send)


def _query(scope) -> str:
    return unquote(scope.get("query_string", b"").decode("latin-1"))


async def _not_found(send) -> None:
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"Not found"})
