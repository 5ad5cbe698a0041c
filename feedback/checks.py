"""What makes feedback valid, with no database: the reasons a thumbs down may give, when two
answers can form a preference pair, what a conversation's title may be (feedback/store.py
checks with these before writing)."""

from chat.errors import BadInput

RATING_REASONS = {
    # reason -> which part of the system it blames
    "wrong or missing source": "retrieval",
    "wrong facts": "generation",
    "not helpful": "generation",
    "too long": "generation",
    "unsafe": "generation",
    "other": "other",
}
TITLE_CHARS = 80


def same_answer(first: str, second: str) -> bool:
    """The same words, surrounding whitespace aside: nothing to prefer between them."""
    return first.strip() == second.strip()


def check_pair(first: str, second: str) -> None:
    """Two answers that can make a preference pair: both written, and not the same text."""
    if not first.strip() or not second.strip():
        raise BadInput("chosen and rejected answers must not be empty")
    if same_answer(first, second):
        raise BadInput("the two answers are the same text: there is nothing to prefer")


def checked_title(title: str) -> str:
    """A conversation's title on one line, refused when empty or longer than TITLE_CHARS."""
    title = " ".join((title or "").split())
    if not 1 <= len(title) <= TITLE_CHARS:
        raise BadInput(f"a title has 1 to {TITLE_CHARS} characters")
    return title
