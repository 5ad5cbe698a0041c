"""Turn files into plain text: txt, md, html (main text via trafilatura) and pdf (pypdf)."""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chat.errors import BadInput

SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
            ".html": "html", ".htm": "html", ".pdf": "pdf"}


@dataclass
class Parsed:
    title: str
    text: str


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Each named file, and every supported file under each named folder (hidden ones skipped)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if (child.is_file() and child.suffix.lower() in SUFFIXES
                        and not any(part.startswith(".") for part in rel.parts)):
                    yield child
        else:
            yield path  # missing or unsupported files are reported by read_bytes/parse


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, or BadInput saying why it cannot be ingested."""
    if not path.is_file():
        raise BadInput("no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise BadInput(f"unsupported file type {path.suffix or '(none)'!r}; "
                       f"supported: {', '.join(sorted(SUFFIXES))}")
    size = path.stat().st_size
    if size == 0:
        raise BadInput("empty file")
    if size > max_bytes:
        raise BadInput(f"file too large ({size / 2**20:.3g} MiB; the limit is "
                       f"{max_bytes / 2**20:.3g} MiB)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read file: {exc.strerror or exc}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse(path: Path, data: bytes) -> Parsed:
    """Title and plain text of a file; BadInput when no text can be extracted."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind == "pdf":
        parsed = _parse_pdf(data, path)
    elif kind == "html":
        parsed = _parse_html(_decode(data), path)
    elif kind == "markdown":
        parsed = _parse_markdown(_decode(data), path)
    elif kind == "text":
        parsed = Parsed(path.stem, _decode(data))
    else:
        raise BadInput(f"unsupported file type {path.suffix!r}")
    parsed.text = _normalize(parsed.text)
    if not parsed.text:
        raise BadInput("no text found in file")
    return parsed


# ---------------------------------------------------------------------------- formats


# byte-order marks of the wide Unicode encodings, longest first (UTF-32-LE starts like UTF-16-LE)
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _decode(data: bytes) -> str:
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)  # the codec reads and drops the BOM
            except UnicodeDecodeError:
                raise BadInput(f"invalid {encoding.upper()} text") from None
            if "\x00" in text[:8192]:
                raise BadInput("binary content in a text file")
            return text
    if b"\x00" in data[:8192]:
        raise BadInput("binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _legacy_8bit(data)


def _legacy_8bit(data: bytes) -> str:
    """Windows-1252 (curly quotes, dashes, the euro sign where Latin-1 has control codes),
    else Latin-1, which never fails."""
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # a byte cp1252 leaves undefined
        return data.decode("latin-1")


def _parse_markdown(text: str, path: Path) -> Parsed:
    text = _strip_html_comments(text)
    title = _markdown_title(text)
    return Parsed(path.stem if title is None else title, text)


def _strip_html_comments(text: str) -> str:
    """``re.sub(r"<!--.*?-->", "", text, flags=re.S)`` in linear time.

    Each comment ends at the first ``-->`` after its ``<!--``; an unclosed ``<!--`` and all
    that follows it stay (no later one could be closed either).
    """
    parts: list[str] = []
    pos = 0
    while (start := text.find("<!--", pos)) >= 0:
        end = text.find("-->", start + 4)
        if end < 0:
            break
        parts.append(text[pos:start])
        pos = end + 3
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)


def _markdown_title(text: str) -> str | None:
    """The text of the first "# Heading" line (a closing run of #s dropped), or None. Line by
    line: a regex over the whole text backtracked for hours on one long line."""
    for line in text.split("\n"):
        if line.startswith("#") and line[1:2].isspace():
            title = line[1:].strip().rstrip("#").strip()
            if title:
                return title
    return None


def _parse_html(html: str, path: Path) -> Parsed:
    import trafilatura

    if not html.strip():
        raise BadInput("empty HTML document")
    # favor_recall keeps short pages; html2txt is the fallback when no main text is found
    text = trafilatura.extract(html, include_comments=False, favor_recall=True)
    if not text:
        text = trafilatura.html2txt(html) or ""
    meta = trafilatura.extract_metadata(html)
    title = meta.title if meta is not None and meta.title else path.stem
    return Parsed(title, text)


def _parse_pdf(data: bytes, path: Path) -> Parsed:
    import io

    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        # an owner password only restricts permissions: the empty user password opens it
        if reader.is_encrypted and not reader.decrypt(""):
            raise BadInput("encrypted PDF (a password is needed to read it)")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except BadInput:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"cannot read PDF: {first}") from None
    return Parsed(str(title), "\n\n".join(pages))


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return text.strip()
