"""Plain helpers that turn answers and stored rows into what the chat tab shows (no gradio here)."""

from __future__ import annotations

import html
import json
import re

from chat.citations import cite
from chat.errors import BadInput
from chat.sanitize import clean_markdown

# What the chat adds to an answer for display, wherever an edit left it: the version line
# ("adapter:": the older wording, still in chats a browser held before), the inline citation
# marks and the answer's own list of sources. Plain enough for JavaScript's RegExp too: the
# browser takes them out of the edit box with the same pattern (chat/web/page.py).
BADGE_PATTERN = r"\s*<sub\b[^>]*>(?:answered by|adapter:|stopped)[^<]*</sub>(?:\s*$)?"
CITE_MARK_PATTERN = r'<sup class="cite"[^>]*>\[\d{1,2}\]</sup>'
SOURCES_PATTERN = r'\s*<details class="answer-sources">[\s\S]*?</details>'
DECORATION_PATTERN = "|".join((BADGE_PATTERN, CITE_MARK_PATTERN, SOURCES_PATTERN))
BADGE_RE, DECORATION_RE = re.compile(BADGE_PATTERN), re.compile(DECORATION_PATTERN)
SNIPPET_CHARS = 240
SCORE_TIP = ("Relevance: how close the passage's meaning is to the question (cosine similarity "
             "of their embeddings; 1 is the same meaning).")


def text_of(content) -> str:
    """Chat content as text: gradio 6 may hand back [{"type": "text", "text": ...}]."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content)


def _is_text_part(part) -> bool:
    return isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text"
                                     and isinstance(part.get("text"), str))


def check_text_history(chat_history) -> list[dict]:
    """The chat a client sent back, refused unless every turn is plain text. Gradio lets a
    client put file, image or component parts in a Chatbot's value; nothing here ever shows
    one, so such a part can only be an attempt to make the server read or serve a file."""
    history = list(chat_history or [])
    for turn in history:
        content = turn.get("content") if isinstance(turn, dict) else None
        parts = content if isinstance(content, list) else [content]
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant") \
                or not all(_is_text_part(p) for p in parts):
            raise BadInput("the chat may hold text only, in user and assistant turns: files, "
                           "images and components are not accepted")
    return history


STOPPED_TIP = "Stopped before it was finished; stored as it was shown."


def badge(adapter_version: str | None, prompt_version: int | None = None,
          corrected: bool = False, stopped: bool = False, cut_at: int | None = None,
          picked: bool = False) -> str:
    """The small line under an answer naming the versions that wrote it, with a tooltip that
    says what they are (escaped: it is rendered as HTML)."""
    base = adapter_version in (None, "", "base")
    words = ["answered by " + ("the base model" if base else f"adapter {adapter_version}")]
    tip = ["Written by the base model, without an adapter." if base else
           f"Written by adapter {adapter_version}: the base model tuned on feedback."]
    if prompt_version is not None:
        words.append(f"prompt v{prompt_version}")
        tip.append(f"It was given prompt profile v{prompt_version} (system prompt, examples).")
    if picked:
        words.append("your pick of two")
        tip.append("You chose it over another answer in a comparison; the answer it replaced "
                   "stays stored.")
    if corrected:
        words.append("corrected")
        tip.append("Shown as corrected; the original answer stays stored.")
    if stopped:
        words.append("stopped")
        tip.append(STOPPED_TIP)
    if cut_at:
        words.append(f"cut off at {cut_at} tokens — continue?")
        tip.append(f"The answer reached the length limit ({cut_at} tokens) before it ended; "
                   "send “continue” for the rest.")
    return (f'\n\n<sub title="{html.escape(" ".join(tip))}">'
            f'{html.escape(" · ".join(words))}</sub>')


def mark_stopped(chat_history: list[dict]) -> list[dict]:
    """The chat after Stop: the answer cut mid-stream gets "stopped" in its badge (a badge
    rides along with every streamed piece), once."""
    history = list(chat_history or [])
    if not history or history[-1].get("role") != "assistant":
        return history  # stopped before the first word: nothing was answered
    text = text_of(history[-1]["content"])
    found = list(BADGE_RE.finditer(text))
    if found and "stopped" in found[-1].group(0):
        return history
    if found:
        sub = found[-1].group(0)
        marked = re.sub(r'title="([^"]*)"', lambda t: f'title="{t.group(1)} '
                        f'{html.escape(STOPPED_TIP)}"', sub, count=1)
        marked = marked.replace("</sub>", " · stopped</sub>")
        text = text[:found[-1].start()] + marked + text[found[-1].end():]
    else:
        text += f'\n\n<sub title="{html.escape(STOPPED_TIP)}">stopped</sub>'
    history[-1] = {**history[-1], "content": text}
    return history


def strip_decorations(text: str) -> str:
    """An answer as the model (or a correction) wrote it, without what the UI added."""
    return DECORATION_RE.sub("", text)


def shown_answer(text: str, adapter_version: str | None, prompt_version: int | None = None,
                 corrected: bool = False, stopped: bool = False,
                 cut_at: int | None = None, sources=None, picked: bool = False) -> dict:
    """An answer as the chat shows it: its text (with inline citations of `sources`, Source
    objects or their stored dicts), the list of those sources, the version badge."""
    sources = [s if isinstance(s, dict) else s.as_dict() for s in sources or []]
    shown = clean_markdown(text)
    if shown.count("```") % 2:  # an answer cut inside a code block would swallow the badge
        shown += "\n```"
    if sources:
        shown = cite(shown, [str(s.get("text", "")) for s in sources],
                     lambda n: _cite_mark(n, sources[n - 1])) + sources_block(sources)
    return {"role": "assistant",
            "content": shown + badge(adapter_version, prompt_version, corrected, stopped,
                                     cut_at, picked)}


def _cite_mark(number: int, source: dict) -> str:
    title = html.escape(f"source {number}: {source.get('document', '')}")
    return f'<sup class="cite" title="{title}">[{number}]</sup>'


def sources_block(sources: list[dict]) -> str:
    """The answer's own sources, folded under it (one line of HTML: markdown keeps it whole)."""
    items = "".join(
        f'<li><b>{html.escape(str(s.get("document", "")))}</b> · '
        f'<span title="{html.escape(SCORE_TIP)}">relevance {float(s.get("score", 0)):.2f}'
        f'</span><br>{html.escape(_snippet(str(s.get("text", ""))))}</li>' for s in sources)
    count = f"{len(sources)} source" + ("s" if len(sources) > 1 else "")
    return (f'\n\n<details class="answer-sources"><summary>{count}</summary><ol>{items}</ol>'
            f'</details>')


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")


def compare_question(question: str) -> str:
    """The line above the two answers of a comparison."""
    return f"**Two answers to:** {clean_markdown(question)}"


def compare_pane(label: str, content: str, picked: bool = False) -> str:
    """One side of a comparison under its header (A or B), marked once it is the pick."""
    return f"#### {label}{' · your pick ✓' if picked else ''}\n\n{content}"


def shown_question(text: str) -> dict:
    return {"role": "user", "content": clean_markdown(text)}


def raw_text(content) -> str:
    """What the person or model actually wrote: badge removed, display escaping undone."""
    return html.unescape(strip_decorations(text_of(content)))


def history_for_model(chat_history: list[dict]) -> list[dict]:
    """The chat as the model should see it: text only, badges removed."""
    return [{"role": m["role"], "content": raw_text(m["content"])}
            for m in chat_history if m.get("role") in ("user", "assistant")]


def answer_ordinal(chat_history: list[dict], index) -> int | None:
    """Which assistant answer (0-based) sits at `index` of the chat, or None if it is not one."""
    if isinstance(index, (list, tuple)):
        index = index[0]
    if not isinstance(index, int) or not 0 <= index < len(chat_history):
        return None
    if chat_history[index].get("role") != "assistant":
        return None
    return sum(1 for m in chat_history[:index] if m.get("role") == "assistant")


def aligned_ids(message_ids: list, chat_history: list[dict]) -> list:
    """message_ids padded/truncated to one entry per assistant message (None: not saved)."""
    n = sum(1 for m in chat_history if m.get("role") == "assistant")
    return (list(message_ids) + [None] * n)[:n]


def source_rows(sources) -> list[list]:
    """Rows for the Sources panel from Source objects or their stored dicts."""
    rows = []
    for i, s in enumerate(sources or [], 1):
        d = s if isinstance(s, dict) else s.as_dict()
        rows.append([i, str(d.get("document", "")), round(float(d.get("score", 0.0)), 3),
                     _snippet(str(d.get("text", ""))), d.get("chunk_id")])
    return rows


def history_from_store(messages: list[dict], corrections: dict[int, str] | None = None,
                       ) -> tuple[list[dict], list[int], list[list]]:
    """A stored conversation as (chat history, assistant message ids, last answer's sources).
    An answer in `corrections` (message id -> latest correction) shows the correction, marked;
    an answer a comparison's pick replaced shows the pick: the chat reopens as it was left."""
    history, ids, sources = [], [], []
    corrections = corrections or {}
    params = {m["id"]: json.loads(m.get("params_json") or "{}") for m in messages}
    by_id, pick_of = {m["id"]: m for m in messages}, {
        p["replaces"]: i for i, p in params.items() if "replaces" in p}
    for m in messages:
        if m["role"] == "user":
            history.append(shown_question(m["content"]))
        elif m["role"] == "assistant" and "replaces" not in params[m["id"]]:
            while m["id"] in pick_of:  # shown where the answer it replaced was (its last pick)
                m = by_id[pick_of[m["id"]]]
            text, said = corrections.get(m["id"], m["content"]), params[m["id"]]
            as_written = m["id"] not in corrections
            cut_at = said.get("max_new_tokens") if said.get("cut_off") else None
            cited = json.loads(m["sources_json"] or "[]")
            history.append(shown_answer(text, m["adapter_version"], m["prompt_version"],
                                        corrected=not as_written,
                                        stopped=bool(said.get("stopped")) and as_written,
                                        cut_at=cut_at if as_written else None, sources=cited,
                                        picked="replaces" in said))
            ids.append(m["id"])
            sources = source_rows(cited)
    return history, ids, sources


def conversation_choices(conversations: list[dict]) -> list[tuple[str, int]]:
    """(title, id) pairs for the conversation list, in the order given (latest activity
    first); a conversation with no title is named by when it began."""
    return [((c["title"] or f"Chat of {c['created_at'][:10]}")[:60], c["id"])
            for c in conversations]
