"""Errors that carry the HTTP status Turnout answers with.

Everything on the request path that can fail on bad input raises one of these;
the connection turns it into a precomputed response, so the handler that
detects a problem never formats bytes itself.
"""

from __future__ import annotations

from http import HTTPStatus


class HttpError(Exception):
    """An error with the status to send and whether the connection must close."""

    status: int = 500
    close: bool = True

    def __init__(self, detail: str = "", *, status: int | None = None) -> None:
        super().__init__(detail)
        if status is not None:
            self.status = status


class BadRequest(HttpError):
    status = 400


class BadRequestTarget(BadRequest):
    """An invalid request target or Host (kept out of the compiled modules: mypyc
    turns a class attribute of a compiled subclass into an unset instance default)."""


class NotFound(HttpError):
    status = 404
    close = False


class RequestTimeout(HttpError):
    status = 408


class UriTooLong(HttpError):
    status = 414


class HeadersTooLarge(HttpError):
    status = 431


class NotImplementedCoding(HttpError):
    status = 501


class BadGateway(HttpError):
    status = 502
    close = False


class ServiceUnavailable(HttpError):
    status = 503
    close = False


class GatewayTimeout(HttpError):
    status = 504
    close = False


class VersionNotSupported(HttpError):
    status = 505


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_response(status: int, close: bool) -> bytes:
    # Traefik answers its own errors with a short text body ("404 page not found",
    # "Bad Gateway"); keep the same bodies so clients and scripts see the same thing.
    body = b"404 page not found\n" if status == 404 else reason(status).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason(status)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


# Precomputed at import: an error answer costs one dict lookup and one write.
ERROR_RESPONSES: dict[tuple[int, bool], bytes] = {
    (status, close): _error_response(status, close)
    for status in (400, 404, 405, 408, 413, 414, 431, 500, 501, 502, 503, 504, 505)
    for close in (False, True)
}


def error_response(status: int, close: bool) -> bytes:
    cached = ERROR_RESPONSES.get((status, close))
    return cached if cached is not None else _error_response(status, close)
