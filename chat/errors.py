"""Named exceptions; the CLI, UI and API turn them into user messages at the boundary."""


class ChatError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ModelUnavailable(ChatError):
    """A base model or embedder could not be found or loaded."""


class BadInput(ChatError):
    """The request itself is invalid (empty, oversized, malformed)."""


class NotFound(ChatError):
    """An id or version that does not exist."""


class Forbidden(ChatError):
    """The caller's role does not allow this action."""


class RateLimited(ChatError):
    """Too many requests from one user in the window; `retry_after`: seconds to wait."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class NotEnoughData(ChatError):
    """Too little feedback to start a training run."""
