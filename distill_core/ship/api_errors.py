"""What the HTTP service (``ship/api.py``) says when a request is wrong: one sentence that names the fix.

    explain(exc.errors(), settings, content_type)   # a validation error (422) in words: what to send instead
    unreadable_body(exc.__cause__)                   # (status, words) for a body FastAPI could not parse
    app.add_middleware(BodyLimit, max_bytes=...)     # 413 before a body larger than any valid request is read

Every answer is ``{"error": "..."}`` (plus ``detail`` for validation errors), never a traceback.
"""

import json
import sys
from typing import Any

from .serve_settings import ServeSettings


def explain(errors: list[dict[str, Any]], settings: ServeSettings, content_type: str = "application/json") -> str:
    """The first validation error as one sentence saying what to send instead."""
    if not errors:
        return "invalid request"
    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    kind, where = e.get("type", ""), ".".join(loc)
    field_name = loc[0] if loc else ""
    example = '{"texts": ["...", "..."]}' if field_name == "texts" else '{"text": "..."}'
    value = e.get("input")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({(e.get('ctx') or {}).get('error', 'decode error')}); send {example}"
    if kind == "missing":
        return f"'{where}' is missing; send {example}" if where else f"the body is empty; send {example}"
    if kind in ("model_attributes_type", "dict_type"):
        if "json" not in content_type.lower():
            return f"send the body as JSON, with the header Content-Type: application/json (not {content_type or 'none'})"
        return f"the body must be a JSON object such as {example}"
    if kind == "string_unicode":
        return f"'{where}' holds an unpaired UTF-16 surrogate (such as \\ud800); send valid Unicode"
    if kind == "string_type":
        return f"'{where}' must be a string, not {_json_type(value)}"
    if kind == "list_type":
        return f"'{where}' must be a list of strings, not {_json_type(value)}"
    if kind in ("string_too_short", "string_pattern_mismatch"):
        return f"'{where}' is empty or only whitespace; type some words to classify"
    if kind == "string_too_long":
        n = len(value) if isinstance(value, str) else "too many"
        return (f"'{where}' has {n} characters; this server takes at most {settings.max_chars} per text "
                "(the model reads only its first tokens; cut the text, or restart the server with a larger --max-chars)")
    if kind == "too_long":
        n = len(value) if isinstance(value, list) else "too many"
        return f"'{where}' holds {n} texts; send at most {settings.max_batch} per request (--max-batch)"
    if kind == "too_short":
        return f"'{where}' is empty; send at least one text"
    if kind == "value_error":
        return f"'{where}': {str(e.get('msg', '')).removeprefix('Value error, ')}"
    return f"'{where}': {e.get('msg', 'invalid')}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def unreadable_body(cause: BaseException | None) -> tuple[int, str]:
    """The status and the words for a JSON body FastAPI could not parse, from the parser's own exception.

    FastAPI answers every such failure "There was an error parsing the body"; the cause tells them apart. Valid
    JSON this server will not read (nested past Python's recursion limit, an integer over its digit limit) is
    422 with the true reason; only a body that is not text is called one.
    """
    example = 'such as {"text": "..."}'
    if isinstance(cause, RecursionError):
        return 422, f"the JSON is nested too deeply to read; send a flat object {example}"
    if isinstance(cause, ValueError) and not isinstance(cause, UnicodeDecodeError) and "digits" in str(cause):
        limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
        return 422, f"the JSON holds a number too large to read (over {limit} digits); send an object {example}"
    if cause is None or isinstance(cause, UnicodeError):
        return 400, f"the body could not be read as text (send JSON in UTF-8, {example})"
    return 400, f"the body could not be read as JSON ({type(cause).__name__}); send JSON in UTF-8, {example}"


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read whole into memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.isdigit():
            return await _send_json(send, 400, {"error": "the Content-Length header is not a number"})
        if length is not None and int(length) > self.max_bytes:
            return await _send_json(send, 413, {"error": f"the body has {int(length)} bytes; this server takes at "
                                                         f"most {self.max_bytes}"})
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    from fastapi import HTTPException

                    # Raised inside the app's body read: FastAPI passes an HTTPException through as the response.
                    raise HTTPException(413, f"the body is over {self.max_bytes} bytes, more than any valid request")
            return message

        return await self.app(scope, limited_receive, send)


async def _send_json(send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
