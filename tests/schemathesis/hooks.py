"""Schemathesis hooks for interop-media: every error answer is a problem document.

Loaded by run.sh through SCHEMATHESIS_HOOKS; adds the check `problem_json_for_errors`.
"""
import json

import schemathesis


def _header(response, name):
    value = None
    for k, v in response.headers.items():
        if k.lower() == name:
            value = v
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value or ""


@schemathesis.check
def problem_json_for_errors(ctx, response, case):
    """Every 4xx/5xx (but HEAD, which has no body) is application/problem+json with a code."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    ctype = _header(response, "content-type")
    if not ctype.startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered with Content-Type {ctype!r}, not application/problem+json"
        )
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{response.status_code}: problem body is not JSON: {e}")
    if not isinstance(body, dict) or not isinstance(body.get("code"), str) or not body["code"]:
        raise AssertionError(f"{response.status_code}: problem body without a `code`: {body!r}")
    if body.get("status") != response.status_code:
        raise AssertionError(f"problem status {body.get('status')} != {response.status_code}")
    return None


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(ctx, value):
    """tus bodies are raw bytes; schemathesis has no built-in serializer for this type."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()
