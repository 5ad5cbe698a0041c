"""Request bodies of the HTTP API (OpenAI's chat-completions shape, plus our feedback)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chat.sanitize import check_unicode

# SQLite integers are signed 64-bit; JSON strings may hold unpaired surrogates
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Text = Annotated[str, AfterValidator(check_unicode)]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's /v1/chat/completions request; unknown OpenAI options are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{
            "model": "smollm2-135m", "stream": False, "max_tokens": 64,
            "messages": [{"role": "user", "content": "What is the refund policy?"}]}]})
    model: str | None = Field(
        None, description="base model id (serves the active adapter), `BASE@base` for no "
        "adapter, or `BASE@vN` to pin an adapter version; see GET /v1/models")
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int = 1
    stop: str | list[str] | None = None
    tools: list | None = None
    conversation_id: Id | None = Field(
        None, description="continue one of your stored conversations (extension)")


class FeedbackRequest(BaseModel):
    """Feedback on an answer this API returned (its `message_id`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"kind": "rating", "message_id": 12, "value": -1, "reason": "wrong facts",
             "comment": "the date is wrong"},
            {"kind": "correction", "message_id": 12, "content": "The policy allows 30 days."},
            {"kind": "preference", "message_id": 12, "other_message_id": 14, "choice": "b"},
            {"kind": "source", "message_id": 12, "chunk_id": 431, "value": -1}]})
    kind: Literal["rating", "correction", "preference", "source"]
    message_id: Id
    value: Literal[1, -1] | None = Field(
        None, description="rating: 1 (up) or -1 (down); source: 1 (helped) or -1 (not relevant)")
    chunk_id: Id | None = Field(
        None, description="source: one of the answer's sources (its `chunk_id`)")
    reason: Text | None = Field(None, description="rating: one of the reasons of the web app")
    comment: Text | None = Field(None, description="rating: free text")
    content: Text | None = Field(None, description="correction: the corrected answer")
    other_message_id: Id | None = Field(
        None, description="preference: the other answer (B) to the same question")
    choice: Literal["a", "b", "tie", "both_bad"] | None = Field(
        None, description="preference: a = message_id is better, b = other_message_id is")
