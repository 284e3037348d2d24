"""Validation of OpenAI request bodies: pure, so every bad input maps to a 400 naming its param.

Unknown fields are ignored (SDKs send many); known fields are type-checked strictly (no
"5" for 5, no NaN) and range-checked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.errors import OpenAIError, invalid_request

DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_COMPLETION_MAX_TOKENS = 16

Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)]
TopP = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
MaxTokens = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Common(_Strict):
    model: Annotated[str, Field(min_length=1)]
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None


class ChatCompletionRequest(_Common):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: MaxTokens | None = None


class CompletionRequest(_Common):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]


@dataclass(frozen=True)
class SamplingParams:
    """What a backend needs to generate, whichever endpoint asked."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _sampling(req: _Common, max_tokens: int) -> SamplingParams:
    stop: tuple[str, ...]
    if req.stop is None:
        stop = ()
    elif isinstance(req.stop, str):
        stop = (req.stop,)
    else:
        stop = tuple(req.stop)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=tuple(s for s in stop if s),
        seed=req.seed,
    )


def chat_sampling(req: ChatCompletionRequest) -> SamplingParams:
    limit = req.max_completion_tokens or req.max_tokens or DEFAULT_CHAT_MAX_TOKENS
    return _sampling(req, limit)


def completion_sampling(req: CompletionRequest) -> SamplingParams:
    return _sampling(req, req.max_tokens or DEFAULT_COMPLETION_MAX_TOKENS)


def completion_prompt(req: CompletionRequest) -> str:
    return req.prompt if isinstance(req.prompt, str) else req.prompt[0]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying why not."""
    if not body.strip():
        raise invalid_request("The request body is empty; expected a JSON object.")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    return data


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[TextPart]", "list[str]", "int", "float", "bool") or (
            "[" in part or part.startswith("constrained")
        ):
            continue  # pydantic's union-branch labels are not part of the param path
        else:
            out += f".{part}" if out else part
    return out


def _first_error(exc: ValidationError) -> OpenAIError:
    errors = exc.errors(include_url=False)
    # Prefer a "missing" error: it is the most actionable.
    err = next((e for e in errors if e["type"] == "missing"), errors[0])
    param = _param(tuple(err["loc"]))
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "Missing required parameter"
    value = err.get("input")
    if isinstance(value, float) and not math.isfinite(value):
        msg = "must be a finite number"
    return invalid_request(f"Invalid value for {param!r}: {msg}.", param=param or None)


def validate_chat(data: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


def validate_completion(data: dict[str, Any]) -> CompletionRequest:
    try:
        return CompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None
