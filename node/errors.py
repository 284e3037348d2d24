"""OpenAI error envelopes: every failure a client sees has the same shape."""

from __future__ import annotations

from typing import Any


class OpenAIError(Exception):
    """An error answered to the client as ``{"error": {...}}`` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return envelope(self.message, self.type, self.code, self.param)


def envelope(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def invalid_request(message: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code="invalid_request")


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model {model!r} does not exist on this node.",
        code="model_not_found",
        param="model",
    )


def model_not_ready(model: str, state: str, retry_after: int, detail: str | None) -> OpenAIError:
    why = f": {detail}" if detail else ""
    return OpenAIError(
        503,
        f"The model {model!r} is not ready (state {state}){why}",
        type_="service_unavailable_error",
        code="model_not_ready",
        headers={"Retry-After": str(retry_after)},
    )


def admission_rejected(model: str, reason: str, retry_after: int) -> OpenAIError:
    what = "its queue is full" if reason == "queue_full" else "the request waited too long"
    return OpenAIError(
        503,
        f"The model {model!r} is at capacity on this node ({what}); retry after {retry_after}s.",
        type_="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after), "x-admission-rejected": reason},
    )


def shutting_down() -> OpenAIError:
    return OpenAIError(
        503,
        "The node is shutting down.",
        type_="service_unavailable_error",
        code="node_shutting_down",
        headers={"Retry-After": "1"},
    )
