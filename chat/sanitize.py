"""Make model and document text safe to render: no raw HTML, no script, no javascript: links.

Two entry points:
- `render_markdown(text)` -> safe HTML (markdown-it with raw HTML off, then an nh3 allow-list):
  for anything shown as HTML (document previews, the admin console, gr.HTML).
- `clean_markdown(text)` -> markdown with raw HTML neutralised and unsafe link targets removed:
  for components that render markdown themselves (gr.Chatbot, gr.Markdown), which add their own
  sanitizer on top (defence in depth).
"""

from __future__ import annotations

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


def clean_markdown(text: str) -> str:
    """Markdown kept; raw HTML tags escaped and unsafe link targets replaced, outside code."""
    text = (text or "").replace("\x00", "")

    def _outside_fences(chunk: str) -> str:
        return _clean_outside(chunk, _CODE_SPAN, _clean_prose)

    return _clean_outside(text, _FENCE, _outside_fences)


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
