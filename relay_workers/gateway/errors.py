"""Errors as the gateway answers them: a Relay error's kind to an HTTP status, every error a JSON body
`{"error": {kind, message, file, line, col, stack, text}}`, and the app's exception handlers."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from relay_lang.errors import RelayError

from ..client import UNREACHABLE

log = logging.getLogger("relay.gateway")

STATUS_OF_KIND = {"bad request": 422, "not found": 404, "unauthorized": 401, "timeout": 504, "unreachable": 503,
                  "too large": 413, "internal error": 500}  # any other kind (a Relay error): 422
KIND_OF_STATUS = {400: "bad request", 401: "unauthorized", 404: "not found", 405: "method not allowed", 422: "bad request"}


def error_response(err: RelayError, status: int | None = None) -> JSONResponse:
    status = status or STATUS_OF_KIND.get(err.kind, 422)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": err.to_dict()}, status_code=status, headers=headers)


def not_found(message: str) -> RelayError:
    return RelayError(message, kind="not found")


async def relay_error(_request: Request, err: RelayError) -> JSONResponse:
    return error_response(err)


async def unreachable(request: Request, exc: Exception) -> Response:
    """The fleet did not answer: 503, naming the URLs the gateway's fleet handle (app.state.fleet) uses."""
    return error_response(request.app.state.fleet.client.unreachable(exc))


async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = KIND_OF_STATUS.get(exc.status_code, "error")
    return error_response(RelayError(str(exc.detail), kind=kind), exc.status_code)


async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return error_response(RelayError("the body is not JSON", kind="bad request"), 400)
    text = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()))}: {p.get('msg')}" for p in problems[:10])
    return error_response(RelayError(f"bad request: {text}", kind="bad request"), 422)


async def internal(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("relay gateway: internal error")
    return error_response(RelayError(f"internal error in the gateway ({type(exc).__name__}; see its log)",
                                     kind="internal error"), 500)


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RelayError, relay_error)  # type: ignore[arg-type]
    for exc_type in UNREACHABLE:
        app.add_exception_handler(exc_type, unreachable)
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal)
