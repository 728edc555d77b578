"""Defences against other web pages, applied to every request before routing (docs/security.md).

- Host: only names in `Settings.trusted_hosts` are answered (400 otherwise), so a DNS-rebinding page
  cannot reach the dashboard under its own domain name.
- Origin: a state-changing request (POST/PUT/PATCH/DELETE) or a websocket from a browser must come from
  the dashboard's own origin, so a form or script on another site, even another local port, cannot
  stop runs or read a run's stream. A request with neither Origin nor Referer is a script, not a
  browser; it is let through unless it carries a session cookie (then a browser sent it).
- Headers: no framing, only our own scripts, no MIME sniffing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import SESSION_COOKIE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Plotly sets inline styles and injects <style> elements, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
API_VIEWERS = ("/docs", "/redoc")
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def host_name(host_header: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def foreign_origin(headers: Headers) -> str | None:
    """The other site that sent this request, or None if it came from our own origin or from no browser."""
    source = headers.get("origin") or headers.get("referer")
    if source is None:
        return None
    # Compare host:port only: behind a TLS proxy the browser says https while we see http.
    if source == "null" or urlsplit(source).netloc.lower() != headers.get("host", "").lower():
        return source
    return None


class WebSecurityMiddleware:
    def __init__(self, app: ASGIApp, *, trusted_hosts: list[str]) -> None:
        self.app = app
        self.any_host = "*" in trusted_hosts
        self.trusted_hosts = {host.strip("[]").lower() for host in trusted_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.any_host and host_name(headers.get("host", "")).lower() not in self.trusted_hosts:
            await self._refuse(scope, receive, send, 400, "unknown Host header: add this name with --allowed-hosts")
            return
        if scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS:
            origin = foreign_origin(headers)
            browser_without_origin = (origin is None and not headers.get("origin") and not headers.get("referer")
                                      and f"{SESSION_COOKIE}=" in headers.get("cookie", ""))
            if origin is not None or (browser_without_origin and scope["type"] == "http"):
                await self._refuse(scope, receive, send, 403, f"cross-site request refused (from {origin or 'a browser without Origin'})")
                return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        # The API viewers load Swagger UI / ReDoc from a CDN with an inline script: no CSP there (no user data).
        headers_for_path = SECURITY_HEADERS[1:] if scope["path"] in API_VIEWERS else SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers_for_path]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, reason: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
        await PlainTextResponse(reason, status_code=status, headers=headers)(scope, receive, send)
