"""Assistant and document text renders without running anything it contains."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from markdown_it import MarkdownIt

from chat.sanitize import clean_html, clean_markdown, render_markdown, unsafe_url

ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java&#x09;script:alert(1))",
    "![img](data:text/html;base64,PHNjcmlwdD4=)",
    "[ref]: javascript:alert(1)",
    "<svg onload=alert(1)>",
    "<iframe src=https://example.com></iframe>",
]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def active_parts(html: str) -> list:
    """What a browser would run: script-like tags, on* handlers, script/data URLs."""
    parser = _Tags()
    parser.feed(html)
    found = []
    for tag, attrs in parser.tags:
        if tag in ("script", "iframe", "svg", "object", "embed", "style"):
            found.append(tag)
        found += [(tag, k) for k in attrs if k.startswith("on")]
        found += [(tag, k, v) for k, v in attrs.items() if k in ("href", "src")
                  and v and unsafe_url(v)]
    return found


def test_render_markdown_never_emits_active_html():
    for attack in ATTACKS:
        out = render_markdown(f"Answer: {attack} done")
        assert not active_parts(out), (attack, out)
        assert "done" in out


def test_render_markdown_keeps_ordinary_markdown():
    out = render_markdown("# Title\n\n**bold** and [a link](https://example.com) and `a < b`"
                          "\n\n```\n<div>code</div>\n```")
    assert "<h1>Title</h1>" in out and "<strong>bold</strong>" in out
    assert 'href="https://example.com"' in out
    assert "<code>a &lt; b</code>" in out and "&lt;div&gt;code&lt;/div&gt;" in out


def test_clean_html_strips_handlers_and_scripts():
    out = clean_html('<p onclick="x()">hi<script>alert(1)</script><img src="a.png" '
                     'onerror="alert(1)"><a href="javascript:alert(1)">l</a></p>')
    assert not active_parts(out) and "script" not in out
    assert "javascript" not in out and "<p>hi" in out and 'src="a.png"' in out


def test_clean_markdown_neutralises_html_and_links_outside_code():
    for attack in ATTACKS:
        out = clean_markdown(attack)
        assert not re.search(r"<\s*[a-z]", out, re.I), (attack, out)
        assert not re.search(r"\]\(\s*(java|data)|\]:\s*java", out, re.I), (attack, out)
    text = "Use `<b>` like this:\n\n```html\n<b>bold</b>\n```\n\n[docs](https://x.org) a < b"
    assert clean_markdown(text) == text  # code and safe links are left alone


def test_clean_markdown_output_renders_safely():
    for attack in ATTACKS:
        out = render_markdown(clean_markdown(attack))
        assert not active_parts(out), (attack, out)


def test_the_checker_itself_sees_attacks():
    assert active_parts('<img src=x onerror="alert(1)">') and active_parts("<script>x</script>")
    assert active_parts('<a href="javascript:alert(1)">x</a>')


def test_unsafe_url():
    assert unsafe_url("javascript:alert(1)") and unsafe_url(" JAVA\tSCRIPT:x")
    assert unsafe_url("java&#115;cript:x") and unsafe_url("data:text/html,x")
    assert not unsafe_url("https://example.com") and not unsafe_url("/relative/path")
    assert not unsafe_url("mailto:a@b.c") and not unsafe_url("#anchor")


# ---------------------------------------------------------------------------- parsed links


def unsafe_destinations(markdown: str) -> list[str]:
    """Every link/image target that a CommonMark parser resolves in `markdown` (backslash
    escapes and entities undone, references followed into quotes and lists) and that
    `unsafe_url` flags. markdown-it's own validateLink is switched off: it would silently drop
    javascript: links, while a laxer renderer downstream would render them."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.validateLink = lambda url: True
    md.normalizeLink = lambda url: url
    found, stack = [], list(md.parse(markdown))
    while stack:
        token = stack.pop()
        stack.extend(token.children or [])
        found += [v for k, v in (token.attrs or {}).items()
                  if k in ("href", "src") and unsafe_url(str(v))]
    return found


def assert_no_unsafe_link(attacks: list[str]) -> None:
    assert all(unsafe_destinations(a) for a in attacks)  # each case really is an attack
    for attack in attacks:
        out = clean_markdown(attack)
        assert not unsafe_destinations(out), (attack, out)
        assert not active_parts(render_markdown(out)), (attack, out)


def test_clean_markdown_blocks_backslash_escaped_scheme():
    assert_no_unsafe_link(["[x](javascript\\:alert(1))", "[x](<javascript\\:alert(1)>)",
                           "[x](javascript\\:alert(1) \"title\")"])


def test_clean_markdown_blocks_reference_in_block_quote():
    assert_no_unsafe_link(["> [x]: javascript:alert(1)\n>\n> [x]",
                           "> > [x]: javascript:alert(1)\n\n[x] and [y][x]"])


def test_clean_markdown_blocks_reference_in_list_item():
    assert_no_unsafe_link(["- [x]: javascript:alert(1)\n\n  [x]",
                           "1. [x]: vbscript:msgbox(1)\n2. [text][x]"])


def test_clean_markdown_blocks_reference_with_url_on_next_line():
    assert_no_unsafe_link(["[x]:\njavascript:alert(1)\n\n[x]",
                           "[x]:\n  <javascript:alert(1)>\n  \"title\"\n\n[x][]"])


def test_clean_markdown_blocks_entity_encoded_scheme():
    assert_no_unsafe_link(["[x](java&#115;cript\\:alert(1))",
                           "> [x]: javascript&#58;alert(1)\n>\n> [x]",
                           "[x]:\njavascript&colon;alert(1)\n\n[x]"])


def test_clean_markdown_blocks_unsafe_images():
    assert_no_unsafe_link(["![x](javascript\\:alert(1))",
                           "> ![x][i]\n>\n> [i]: data:text/html;base64,PHNjcmlwdD4=",
                           "| a |\n|---|\n| ![x](data\\:text/html,x) |"])


def test_clean_markdown_blocking_leaves_code_safe_links_and_titles_alone():
    code = "Use `[x](javascript\\:y)` here\n\n```\n[x](javascript\\:y)\n```\n"
    safe = "[ok](https://example.com \"javascript:alert(1)\")"
    out = clean_markdown(code + "\n[x](javascript\\:alert(1))\n\n" + safe)
    assert not unsafe_destinations(out), out
    assert out.startswith(code) and out.endswith(safe)
    assert clean_markdown(safe) == safe and clean_markdown(code) == code
    assert "&lt;javascript:" in clean_markdown("<javascript:alert(1)>")  # autolinks stay text
