"""What the OpenAPI document (`/schema/openapi.json`) says beyond what Litestar derives from the handlers:
every error status each API route can answer, with the error body, and the request bodies' exact JSON Schema
(msgspec's own: Litestar's drops the constraints of list items and ``additionalProperties: false``).

Owns no route and no behaviour: only the document. Call `document` once the app is built, before the
schema is first served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT, HTTP_413_REQUEST_ENTITY_TOO_LARGE

_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


class Unauthorized(NotAuthorizedException):
    detail = (
        "missing bearer key, or a key this deployment does not know (`WWW-Authenticate: Bearer`); without "
        "`Authorization`, a session cookie that is missing, expired, signed out or of a removed key"
    )


class Forbidden(PermissionDeniedException):
    detail = (
        "a request authorized by the dashboard's session cookie (no `Authorization` header) from another "
        "site (`Origin`, `Sec-Fetch-Site: cross-site`), or a POST, PUT, PATCH or DELETE without the "
        "session's `X-CSRF-Token`; a bearer request is never refused this way"
    )


class NotFound(NotFoundException):
    detail = "no such id in the caller's account (another account's id answers the same)"


class Conflict(ClientException):
    status_code = HTTP_409_CONFLICT
    detail = "the message id is already registered for another campaign or recipient"


class TooLarge(ClientException):
    status_code = HTTP_413_REQUEST_ENTITY_TOO_LARGE
    detail = "the request body is larger than the server accepts"


class Unavailable(ServiceUnavailableException):
    detail = "the store (or the privacy topic) is unavailable; retry after `Retry-After` seconds"


def bad_request(rules: str) -> type[ClientException]:
    """A 400 whose documented description is ``rules`` (what the route refuses, by parameter)."""
    return type("BadRequest", (ClientException,), {"detail": rules})


BAD_BODY: Final = (
    "the body is not UTF-8 JSON, is nested too deeply, has an unknown field or a field of the wrong type "
    "or out of its bounds; `detail` names the field"
)


@dataclass
class ErrorBody:
    """Every error's body."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


def _documented(exc: type[HTTPException]) -> ResponseSpec:
    description = exc.detail or HTTPStatus(exc.status_code).phrase
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


def _document_errors(app: Litestar) -> None:
    """Add to every API route's documented answers the errors every route can give: 401 (the bearer key),
    403 (the session cookie's checks, `api.cookie_auth`), 503 (the store away), 413 (a body too large) and
    the body's 400 where a body is read. Routes add their own (400 rules, 404, 409 ...) with ``raises=`` in
    their decorators; the 400 rules of a route are joined into one description. Each status is documented
    once, with the error body (`ErrorBody`). Call before the schema is first served."""
    for route in app.routes:
        if not route.path.startswith("/v1"):
            continue
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or not handler.include_in_schema:
                continue
            own = list(handler.raises or [])
            rules = [exc.detail for exc in own if exc.status_code == HTTP_400_BAD_REQUEST and exc.detail]
            errors: list[type[HTTPException]] = [e for e in own if e.status_code != HTTP_400_BAD_REQUEST]
            errors += [Unauthorized, Forbidden, Unavailable]
            if "{" in route.path and not route.path.endswith("/do-not-track"):
                errors.append(NotFound)  # an id (message, campaign, recipient, webhook) the account lacks
            if handler.http_methods & _BODY_METHODS:
                errors.append(TooLarge)
                rules.append(BAD_BODY)
            if handler.parsed_fn_signature.parameters or rules:
                rules.append("a parameter of the wrong type or out of its bounds; `detail` names it")
                errors.append(bad_request("; ".join(dict.fromkeys(rules))))
            documented = {exc.status_code: _documented(exc) for exc in errors}
            handler.responses = {**documented, **(handler.responses or {})}


def _exact_bodies(plugin: OpenAPIPlugin, bodies: Sequence[type[Any]]) -> None:
    """Serve msgspec's JSON Schema for the request body types ``bodies`` in place of Litestar's: the document
    is built now (Litestar keeps the dict it serves) and edited in place."""
    _, components = msgspec.json.schema_components(bodies, ref_template="#/components/schemas/{name}")
    schemas = plugin.provide_openapi_schema().setdefault("components", {}).setdefault("schemas", {})
    schemas.update({name: body for name, body in components.items() if name in schemas})


QUERY_NAMES: Final = "pixelpipe_query_names"  # app.state key: id(handler) -> its documented query names


def _query_names(app: Litestar, schema: dict[str, Any]) -> dict[int, frozenset[str]]:
    names: dict[int, frozenset[str]] = {}
    paths = schema.get("paths", {})
    for route in app.routes:
        item = paths.get(route.path_format)
        if not route.path.startswith("/v1") or item is None:
            continue
        for handler in getattr(route, "route_handlers", ()):
            for method in getattr(handler, "http_methods", ()):
                operation = item.get(method.lower())
                if operation is not None:
                    names[id(handler)] = frozenset(
                        p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
                    )
    return names


def document(app: Litestar, *, bodies: Sequence[type[Any]]) -> None:
    """Document every API route's errors, and the exact schema of the request bodies ``bodies``; keep each
    API route's query parameter names (`QUERY_NAMES`), so that an unknown one is refused."""
    _document_errors(app)
    plugin = app.plugins.get(OpenAPIPlugin)
    _exact_bodies(plugin, bodies)
    app.state[QUERY_NAMES] = _query_names(app, plugin.provide_openapi_schema())
