"""A lean HTTP transport for the ESP API session of each sender thread.

anymail posts every message through a `requests.Session`. For each call
requests prepares the request, merges the session's settings, runs hooks,
collects cookies, and urllib3 writes the headers and the body separately:
about 0.3 ms of CPU per call, which at hundreds of calls a second is a large
part of a worker's time. `LeanSession` is a `requests.Session` whose
`request` sends the plain calls an ESP API needs (a str or bytes body or none,
optional basic auth, no files, no proxy) over a kept-alive connection in one
write, and returns a `requests.Response`. Any other call goes to requests
unchanged.

Failures are raised as the requests exceptions that anymail wraps and
`mail.send.classify` tells apart: `ConnectTimeout` or `ConnectionError`
when nothing went out, `ReadTimeout` or `ConnectionError("Connection
aborted ...")` once the request was written. A kept-alive connection that the
server closed while idle is noticed before it is reused, so a request never
goes out on a dead socket.

Answers are read with httptools (the llhttp parser), which handles chunked and
length-delimited bodies and keep-alive rules; `http.client` parses every
answer's headers with the email package, a tenth of a millisecond a call.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import select
import socket
import ssl
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import httptools
import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

# Bodies larger than this are written in two parts (headers, then body) rather
# than copied into one buffer.
ONE_WRITE_LIMIT = 4 * 1024 * 1024
# An answer whose status line and headers are longer than this is refused (as
# http.client refuses a header line over 64 KiB).
MAX_HEAD_BYTES = 64 * 1024
# Each recv allocates this much while it waits, in every sender thread at once;
# an ESP's answer is a few hundred bytes.
READ_SIZE = 16 * 1024


class _Answer:
    """One HTTP answer, as httptools reports its parts."""

    __slots__ = ("body", "complete", "head_bytes", "head_done", "headers", "keep_alive", "parser", "reason")

    def __init__(self) -> None:
        self.parser: Any = None
        self.keep_alive = False
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.head_done = False
        self.complete = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        # Asked here: once the message is over the parser has moved on.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True

    def framed(self) -> bool:
        """Whether the headers say where the body ends (else it ends when the server closes)."""
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" in names or b"transfer-encoding" in names


def read_answer(sock: socket.socket) -> tuple[int, str, list[tuple[str, str]], bytes, bool]:
    """(status, reason, headers, body, whether the server keeps the connection)
    of the next answer on `sock`. Raises http.client.HTTPException for an
    answer that is not HTTP or is cut short, and TimeoutError as the socket does."""
    answer = _Answer()
    parser = answer.parser = httptools.HttpResponseParser(answer)
    received = 0
    ended = False
    while not answer.complete:
        data = sock.recv(READ_SIZE)
        if not data:
            if answer.head_done and not answer.framed():
                ended = True  # the body ran to the end of the connection
                break
            raise http.client.RemoteDisconnected("Remote end closed connection without a complete answer")
        received += len(data)
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            raise http.client.HTTPException(f"unreadable answer: {exc}") from exc
        if answer.head_bytes > MAX_HEAD_BYTES or (not answer.head_done and received > MAX_HEAD_BYTES):
            raise http.client.LineTooLong(f"status line and headers over {MAX_HEAD_BYTES} bytes")
    status = parser.get_status_code()
    if status < 200:
        # An ESP has no reason to send 1xx (no request asks to expect 100-continue).
        raise http.client.HTTPException(f"unexpected interim answer {status}")
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers]
    keep = not ended and answer.keep_alive
    return status, answer.reason.decode("latin-1").strip(), headers, b"".join(answer.body), keep


@lru_cache(maxsize=64)
def _target(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path?query) for an http(s) URL without credentials; else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname, port, path


def _timeouts(timeout: Any) -> tuple[float | None, float | None]:
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


class LeanSession(requests.Session):
    """A requests session for one thread's ESP calls; see the module's docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # proxies and CA bundles are settled once, by mail.send.settle_environment
        self._sockets: dict[tuple[str, str, int], socket.socket] = {}
        self._tls: ssl.SSLContext | None = None
        self.lean_calls = 0

    # --- The fast path --------------------------------------------------------------------

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        timeout: Any = None,
        files: Any = None,
        **kwargs: Any,
    ) -> requests.Response:
        target = _target(url)
        lean = (
            target is not None
            # A HEAD answer announces a body it does not send; only a reader told
            # the method can frame it, so requests (urllib3) reads those.
            and method.upper() != "HEAD"
            and not files
            and not kwargs
            and not self.proxies
            and not self.cookies
            and not any(self.hooks.values())
            and isinstance(data, str | bytes | type(None))
            and (auth is None or (isinstance(auth, tuple) and len(auth) == 2))
            and (self.verify is True or isinstance(self.verify, str) or target[0] == "http")
            and self.cert is None
            and self.auth is None
        )
        if not lean:
            return super().request(
                method, url, params=params, data=data, headers=headers, auth=auth, timeout=timeout,
                files=files, **kwargs,
            )  # fmt: skip
        assert target is not None
        scheme, host, port, path = target
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params, doseq=True)}"
        body = data.encode("utf-8") if isinstance(data, str) else (data or b"")
        self.lean_calls += 1
        return self._send(method.upper(), scheme, host, port, path, url, body, headers or {}, auth, timeout)

    def _head(
        self, method: str, host: str, port: int, scheme: str, path: str, headers: Any, auth: Any, size: int
    ) -> tuple[bytes, CaseInsensitiveDict[Any]]:
        default_port = 443 if scheme == "https" else 80
        merged = CaseInsensitiveDict(self.headers)
        merged["Host"] = host if port == default_port else f"{host}:{port}"
        merged["Accept-Encoding"] = "identity"  # answers are small; nothing to decompress
        for name, value in headers.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if auth is not None:
            user, password = (part.encode("latin-1") if isinstance(part, str) else part for part in auth)
            merged["Authorization"] = "Basic " + base64.b64encode(user + b":" + password).decode("ascii")
        if size or method not in ("GET", "HEAD", "DELETE"):
            merged["Content-Length"] = str(size)
        lines = [f"{method} {path} HTTP/1.1"]
        for name, value in merged.items():
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise requests.exceptions.InvalidHeader(f"invalid header {name!r}")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), merged

    def _send(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        path: str,
        url: str,
        body: bytes,
        headers: Any,
        auth: Any,
        timeout: Any,
    ) -> requests.Response:
        head, sent_headers = self._head(method, host, port, scheme, path, headers, auth, len(body))
        connect_timeout, read_timeout = _timeouts(timeout)
        key = (scheme, host, port)
        sock = self._reusable(key)
        if sock is None:
            sock = self._connect(key, connect_timeout)
        sock.settimeout(read_timeout)
        try:
            if len(body) <= ONE_WRITE_LIMIT:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                sock.sendall(body)
            status, reason, answer_headers, content, keep = read_answer(sock)
        except TimeoutError as exc:
            self._drop(key)
            raise requests.exceptions.ReadTimeout(
                f"Read timed out (read timeout={read_timeout}) from {host}:{port}"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop(key)
            raise requests.exceptions.ConnectionError(
                f"Connection aborted: {exc.__class__.__name__}: {exc}"
            ) from exc
        if not keep:
            self._drop(key)
        return self._response(status, reason, answer_headers, content, url, method, sent_headers, body)

    def _response(
        self,
        status: int,
        reason: str,
        answer_headers: list[tuple[str, str]],
        content: bytes,
        url: str,
        method: str,
        headers: Any,
        body: bytes,
    ) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.reason = reason
        response.headers = CaseInsensitiveDict(answer_headers)
        response._content = content
        response.encoding = get_encoding_from_headers(response.headers)
        response.url = url
        prepared = requests.PreparedRequest()
        prepared.method, prepared.url, prepared.headers, prepared.body = method, url, headers, body
        response.request = prepared
        return response

    # --- Connections ----------------------------------------------------------------------

    def _reusable(self, key: tuple[str, str, int]) -> socket.socket | None:
        sock = self._sockets.get(key)
        if sock is None:
            return None
        try:
            # An idle kept-alive socket has nothing to read; if it has, the
            # server closed it (or sent something unasked): start afresh.
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            readable = [sock]
        if readable:
            self._drop(key)
            return None
        return sock

    def _connect(self, key: tuple[str, str, int], timeout: float | None) -> socket.socket:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise requests.exceptions.ConnectTimeout(f"connect to {host}:{port} timed out") from exc
        except OSError as exc:
            raise requests.exceptions.ConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            if self._tls is None:
                # The CA bundle requests would verify against: the session's own, or certifi's.
                bundle = self.verify if isinstance(self.verify, str) else certifi.where()
                self._tls = ssl.create_default_context(cafile=bundle)
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise requests.exceptions.SSLError(f"TLS with {host}:{port} failed: {exc}") from exc
        self._sockets[key] = sock
        return sock

    def _drop(self, key: tuple[str, str, int]) -> None:
        sock = self._sockets.pop(key, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        for key in list(self._sockets):
            self._drop(key)
        super().close()


def use_lean_session(connection: Any) -> bool:
    """Give an open anymail requests backend a LeanSession with the same headers,
    proxies and verification; other backends are left alone. Returns whether it did."""
    session = getattr(connection, "session", None)
    if type(session) is not requests.Session:
        return False
    lean = LeanSession()
    lean.headers = session.headers
    lean.proxies = session.proxies
    lean.verify = session.verify
    lean.cert = session.cert
    lean.auth = session.auth
    lean.hooks = session.hooks
    session.close()
    connection.session = lean
    return True
