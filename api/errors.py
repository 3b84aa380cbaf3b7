"""How the API answers what it cannot serve: the error body, the checks every JSON body passes before it is
decoded, the answer (and the log line) of an unexpected failure, and the errors each route documents.

Every error answers ``{"status_code": int, "detail": str, "extra"?: ...}`` (Litestar's shape) and a 4xx
``detail`` names the parameter as the client sent it. A 5xx is never the client's fault: each one is logged
here with its cause; its answer says nothing about the cause (no SQL, no paths, no secrets). Owns no route.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    InternalServerException,
    ValidationException,
)
from litestar.status_codes import (
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from api.openapi import QUERY_NAMES
from schemas.store import StoreError

log = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 5  # a store that is away: when a client may try again
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


def body_problem(body: bytes) -> str | None:
    """Why a JSON request body cannot be read at all, or None (a body that is merely malformed JSON is left
    to the decoder, whose 400 says where). Pure."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body: not UTF-8 (byte {exc.start}); JSON must be UTF-8 encoded"
    try:
        msgspec.json.decode(body)
    except RecursionError:
        return "request body: JSON nested too deeply"
    except msgspec.DecodeError:
        return None
    return None


def unknown_query(given: Iterable[str], known: frozenset[str]) -> str | None:
    """Why a query string is refused (a parameter the route does not take: a typo such as
    ``include_machines`` would otherwise be ignored in silence), or None. Pure."""
    unknown = sorted(set(given) - known)
    if not unknown:
        return None
    takes = ", ".join(sorted(known)) or "none"
    return f"unknown query parameter {unknown[0]!r} (this route takes: {takes})"


async def check_request(request: Request[Any, Any, Any]) -> None:
    """Before any handler: refuse (400) a query parameter the route does not document, and a JSON body the
    decoder would choke on rather than reject (bytes that are not UTF-8, nesting deep enough to exhaust the
    recursion limit). The body is read once: Litestar keeps it for the handler."""
    known = request.app.state.get(QUERY_NAMES, {}).get(id(request.scope.get("route_handler")))
    if known is not None and (problem := unknown_query(request.query_params.keys(), known)) is not None:
        raise ClientException(problem)
    if request.method not in _BODY_METHODS:
        return
    try:
        body = await request.body()
    except InternalServerException:  # Litestar's word for a client that left before its whole body
        # Nothing failed here and no one is left to answer: a note, not a logged 5xx (a client dropping
        # uploads, or the body deadline closing them, must not fill the error log).
        log.info("%s: the client left before sending its whole body", _route(request))
        raise ClientException("request body: the connection closed before all of it arrived") from None
    if body and (problem := body_problem(body)) is not None:
        raise ClientException(problem)


def _route(request: Request[Any, Any, Any]) -> str:
    # The route's template, not the path: a path can hold a recipient's address, which must not reach a log.
    template = request.scope.get("path_template") or "(no route)"
    return f"{request.method} {template}"


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Any failure that is not an HTTP answer of a handler: logged with its cause, answered 503 when the store
    could not be reached (the client may retry), else 500 (a store that answered with an error: its message
    holds ClickHouse's code and name, for the log only)."""
    if isinstance(exc, StoreError) and exc.away:
        log.warning("%s answered 503: the store is unavailable (%s)", _route(request), exc)
        return Response(
            {"status_code": HTTP_503_SERVICE_UNAVAILABLE, "detail": "the store is unavailable; retry later"},
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
            media_type=MediaType.JSON,
        )
    if isinstance(exc, HTTPException):  # a handler's own 500
        log.error("%s answered %d: %s", _route(request), exc.status_code, exc.detail, exc_info=exc)
        detail = exc.detail
    else:
        log.error("%s failed: %s: %s", _route(request), type(exc).__name__, exc, exc_info=exc)
        detail = "Internal Server Error"
    return Response(
        {"status_code": HTTP_500_INTERNAL_SERVER_ERROR, "detail": detail},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=MediaType.JSON,
    )


def _names_as_sent(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The handler's keyword -> the name the client sends (``end`` -> ``to``, ``last_event_id`` ->
    ``Last-Event-ID``)."""
    handler = request.scope.get("route_handler")
    if handler is None:
        return {}
    names = {}
    for keyword, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        alias = (
            getattr(kwarg, "query", None) or getattr(kwarg, "header", None) or getattr(kwarg, "name", None)
        )
        if isinstance(alias, str) and alias != keyword:
            names[keyword] = alias
    return names


# A field's pattern -> what it means, for the 400 of a value that does not match (set where it is defined).
PATTERN_WORDS: dict[str, str] = {}


def _in_words(message: str) -> str:
    for pattern, words in PATTERN_WORDS.items():
        message = message.replace(f"matching regex {pattern!r}", f"that is {words}")
    return message


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's 400 for a parameter or body that does not validate, naming each parameter as the client
    sent it, in ``detail`` (``from: Invalid RFC3339 encoded datetime``) and ``extra[].key``."""
    names = _names_as_sent(request)
    extra = exc.extra if isinstance(exc.extra, list) else []
    problems = []
    for item in extra:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            item["key"] = names.get(item["key"], item["key"])
            item["message"] = _in_words(str(item.get("message", "invalid")))
            problems.append(f"{item['key']}: {item['message']}")
    body: dict[str, Any] = {
        "status_code": exc.status_code,
        "detail": "; ".join(problems) or exc.detail,
    }
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON)


EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    HTTP_500_INTERNAL_SERVER_ERROR: internal_error,
    ValidationException: validation_error,
}
