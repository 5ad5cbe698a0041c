"""Files a browser uploads to the admin console: which names and types are accepted, and
reading only what Gradio itself received (never a path a client names)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from chat.errors import BadInput

ALLOWED_UPLOADS = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def file_name(original: str) -> str:
    """The last part of a name a browser sent (it may hold a Windows or POSIX path)."""
    return re.split(r"[\\/]", original)[-1]


def safe_upload_name(original: str) -> str:
    """A server-generated file name that keeps only a known extension of the original."""
    if "\x00" in original:
        raise BadInput("the file name contains a NUL character")
    base = file_name(original)
    ext = Path(base).suffix.lower()
    if ext not in ALLOWED_UPLOADS:
        raise BadInput(f"unsupported file type {ext or '(none)'!r}; allowed: "
                       f"{', '.join(sorted(ALLOWED_UPLOADS))}")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(base).stem).strip("-")[:40] or "document"
    return f"{secrets.token_hex(6)}-{stem}{ext}"


def read_upload(path: str | Path, upload_folder: Path) -> bytes:
    """Bytes of a file the browser uploaded: only a regular file inside `upload_folder`
    (Gradio's), never a path a client named elsewhere on the server, nor a symlink."""
    path = Path(path)
    if path.is_symlink():
        raise BadInput("symbolic links are not accepted")
    if not path.resolve().is_relative_to(upload_folder.resolve()) or not path.is_file():
        raise BadInput("only files uploaded through this page are accepted")
    return path.read_bytes()


def browser_files(paths: list[str] | None, upload_folder: Path) -> list[tuple[str, bytes]]:
    """(the name the browser gave, bytes) of each file Gradio handed a handler: a path in
    its upload folder that ends in the original name."""
    return [(Path(path).name, read_upload(path, upload_folder)) for path in paths or []]
