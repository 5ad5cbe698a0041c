"""Make model and document text safe to render: no raw HTML, no script, no javascript: links.

Two entry points:
- `render_markdown(text)` -> safe HTML (markdown-it with raw HTML off, then an nh3 allow-list):
  for anything shown as HTML (document previews, the admin console, gr.HTML).
- `clean_markdown(text)` -> markdown with raw HTML neutralised and no link or image to an unsafe
  URL, as a CommonMark parser resolves it (escapes, entities, references): for components
  that render markdown themselves (gr.Chatbot, gr.Markdown), which add their own sanitizer on
  top (defence in depth).
"""

from __future__ import annotations

import functools
import html
import re

import nh3

from chat.errors import BadInput

SAFE_SCHEMES = {"http", "https", "mailto"}
_TAGS = {"a", "p", "br", "hr", "strong", "em", "b", "i", "u", "s", "del", "code", "pre",
         "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead",
         "tbody", "tr", "th", "td", "span", "div", "sup", "sub", "img"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"},
               "th": {"align"}, "td": {"align"}}

# ---------------------------------------------------------------------------- HTML


def clean_html(fragment: str) -> str:
    """An HTML fragment reduced to an allow-list: no script/style, no on* handlers, safe URLs."""
    return nh3.clean(fragment or "", tags=_TAGS, clean_content_tags={"script", "style"},
                     attributes=_ATTRIBUTES, url_schemes=SAFE_SCHEMES,
                     link_rel="noopener noreferrer nofollow")


def render_markdown(text: str) -> str:
    """Markdown to safe HTML: raw HTML in the text is shown as text, never interpreted."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    return clean_html(md.render(text or ""))


# ---------------------------------------------------------------------------- markdown

# A fenced code block (CommonMark: up to 3 spaces, then 3+ ` or ~; closed by the same run or
# by the end of the text) or an inline code span. Code is rendered as text by every markdown
# renderer, so it is left untouched; everything else is cleaned.
_FENCE = re.compile(
    r"^ {0,3}(?P<f>`{3,}(?=[^`\n]*$)|~{3,})[^\n]*(?:\n.*?(?:^ {0,3}(?P=f)[`~]*[ \t]*$|\Z)|\Z)",
    re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# "<" that would open a tag, comment, declaration or autolink
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
# the destination of an inline link/image "](dest" or of a reference definition "[x]: dest"
_LINK_DEST = re.compile(r"(\]\(\s*<?|^[ ]{0,3}\[[^\]\n]+\]:[ \t]*<?)"
                        r"((?:[^\s()<>]|\([^\s()<>]*\))*)", re.MULTILINE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")


def unsafe_url(url: str) -> bool:
    """True for URLs whose scheme is not http(s)/mailto (javascript:, data:, vbscript: ...)."""
    # browsers decode entities and drop tabs/newlines/controls before reading the scheme
    plain = _INVISIBLE.sub("", html.unescape(url)).lower()
    match = re.match(r"([a-z][a-z0-9+.\-]*):", plain)
    return bool(match) and match.group(1) not in SAFE_SCHEMES


def _clean_prose(text: str) -> str:
    def _dest(m: re.Match) -> str:
        return m.group(1) + ("#blocked" if unsafe_url(m.group(2)) else m.group(2))

    return _LINK_DEST.sub(_dest, _TAG_START.sub("&lt;", text))


def _clean_outside(text: str, pattern: re.Pattern, inner) -> str:
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(inner(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(inner(text[pos:]))
    return "".join(out)


# Every link or image starts at an unescaped "[" (inline, reference, image) or "<" (autolink);
# escaping those turns it into text. One after an odd run of backslashes is already text.
_LINK_OPENER = re.compile(r"(?<!\\)((?:\\\\)*)([\[<])")
# where markdown-it ends a line (it normalises \r\n and \r to \n), so token.map indexes these
_LINE_END = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")


@functools.cache
def _link_parser():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    # keep each destination exactly as resolved (escapes and entities undone): markdown-it's
    # validateLink would drop javascript: links here, but a laxer renderer downstream would not
    md.validateLink = lambda url: True
    md.normalizeLink = lambda url: url
    return md


def _unsafe_link_blocks(text: str) -> list[tuple[int, int]]:
    """Line ranges [start, end) of the blocks holding a parsed link or image to an unsafe URL.
    The check runs on parsed tokens: references are resolved wherever they are defined
    (quotes, list items, URL on the next line), escapes and entities already undone."""
    blocks, where = set(), (0, 0)
    for block in _link_parser().parse(text):
        where = tuple(block.map or where)  # inline tokens carry the lines of their block
        stack = list(block.children or [])
        while stack:  # links nest in images' alt text: walk every level
            token = stack.pop()
            stack.extend(token.children or [])
            if any(unsafe_url(str(token.attrs.get(k, ""))) for k in ("href", "src")):
                blocks.add(where)
                break
    return sorted(blocks)


def _escape_openers(chunk: str) -> str:
    return _LINK_OPENER.sub(r"\1\\\2", chunk)


def _escape_blocks(text: str, blocks: list[tuple[int, int]], keep_code: bool) -> str:
    """`text` with every link opener escaped in the lines of `blocks` (outside code spans when
    `keep_code`). Escaping is idempotent, so blocks that overlap are harmless."""
    lines = _LINE_END.split(text)
    for start, end in blocks:
        block = "".join(lines[start:end])
        block = (_clean_outside(block, _CODE_SPAN, _escape_openers) if keep_code
                 else _escape_openers(block))
        lines[start:end] = [block] + [""] * (len(lines[start:end]) - 1)
    return "".join(lines)


def _without_unsafe_links(text: str) -> str:
    """`text` unchanged unless a parsed link or image in it points at an unsafe URL; then the
    link syntax of those blocks is escaped so they read as text, re-checked after each step.
    Each step is one parse (linear); later steps are reached only when the code-span regex
    and the parser disagree (crafted input), so they may put backslashes into code."""
    if "[" not in text and "<" not in text:  # no link can open: spare the parse
        return text
    steps = (functools.partial(_escape_blocks, keep_code=True),
             functools.partial(_escape_blocks, keep_code=False),
             lambda chunk, _blocks: _escape_openers(chunk))
    for step in steps:
        blocks = _unsafe_link_blocks(text)
        if not blocks:
            return text
        text = step(text, blocks)
    if _unsafe_link_blocks(text):  # unreachable with no opener left; show it all as code then
        return "".join("    " + line for line in _LINE_END.split(text))
    return text


def clean_markdown(text: str) -> str:
    """Markdown kept; raw HTML tags escaped and unsafe link targets replaced, outside code;
    then any link the parser still resolves to an unsafe URL is escaped into text."""
    text = (text or "").replace("\x00", "")

    def _outside_fences(chunk: str) -> str:
        return _clean_outside(chunk, _CODE_SPAN, _clean_prose)

    return _without_unsafe_links(_clean_outside(text, _FENCE, _outside_fences))


# ---------------------------------------------------------------------------- input


def check_unicode(text: str, what: str = "the text") -> str:
    """`text` unchanged, or BadInput when it cannot be stored or tokenized: an unpaired
    surrogate (JSON allows "\\ud800"; UTF-8 does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid Unicode (an unpaired surrogate)") from None
    return text


# ---------------------------------------------------------------------------- model input


def special_token_pattern(tokenizer) -> re.Pattern | None:
    """The strings this tokenizer reads as control tokens (<|im_start|>, <|endoftext|>...)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials = {*getattr(tokenizer, "all_special_tokens", []),
                *(t.content for t in added.values() if getattr(t, "special", False))}
    specials = sorted((t for t in specials if t), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, specials))) if specials else None


def inert(text: str, pattern: re.Pattern | None) -> str:
    """`text` with every control-token string broken by a zero-width space after its first
    character: a document or a question that writes <|im_start|>system can no longer open a
    turn of its own when the chat template is tokenized; it stays readable as text."""
    if pattern is None or not text:
        return text
    return pattern.sub(lambda m: m.group()[0] + "\u200b" + m.group()[1:], text)
