"""The lean ESP session: one write per call, kept-alive connections, and the
same errors requests would raise, so sending tells sent from not-sent as before."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable

import pytest
import requests
from anymail.exceptions import AnymailRequestsAPIError

from mail.send import TransientSendError, UncertainSendError, classify
from mail.transport import LeanSession, use_lean_session


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ScriptedHTTP:
    """A raw HTTP/1.1 server on loopback. `action(request)` returns the bytes to
    answer with, a list of byte strings to write one at a time (a slow network
    cuts an answer anywhere), None to close the connection without answering,
    or (bytes, "then close") to answer and then hang up without saying so."""

    def __init__(self, action: Callable[[dict], bytes | tuple[bytes, str] | None], tls=None):
        self.action = action
        self.requests: list[dict] = []
        self.connections = 0
        self.reads_per_request: list[int] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer.connections += 1
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    self.serve()

            def serve(self):
                buffer = b""
                while True:
                    reads = 0
                    while b"\r\n\r\n" not in buffer:
                        chunk = self.request.recv(65536)
                        reads += 1
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    headers = {
                        name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])
                    }
                    size = int(headers.get("content-length", 0))
                    while len(buffer) < size:
                        chunk = self.request.recv(65536)
                        reads += 1
                        if not chunk:
                            return
                        buffer += chunk
                    body, buffer = buffer[:size], buffer[size:]
                    request = {"line": lines[0], "headers": headers, "body": body}
                    outer.requests.append(request)
                    outer.reads_per_request.append(reads)
                    answer = outer.action(request)
                    if answer is None:
                        return
                    if isinstance(answer, tuple):
                        self.request.sendall(answer[0])
                        return
                    if isinstance(answer, list):
                        for piece in answer:
                            self.request.sendall(piece)
                            time.sleep(0.005)
                        continue
                    self.request.sendall(answer)

        self.server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ScriptedHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok(body: dict | None = None, *, close: bool = False, status: int = 200, headers: str = "") -> bytes:
    data = json.dumps(body or {"MessageID": "m-1"}).encode()
    extra = "Connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\n{extra}{headers}\r\n"
    ).encode() + data


def test_a_call_goes_out_whole_and_comes_back_as_a_requests_response():
    with ScriptedHTTP(lambda request: ok({"MessageID": "abc"}, headers="X-Seen: 1\r\n")) as server:
        session = LeanSession()
        session.headers["User-Agent"] = "django-anymail/test"
        body = json.dumps({"HtmlBody": "<p>é</p>" * 2000})
        response = session.request(
            "post",
            server.url + "/email?x=1",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
    assert response.status_code == 200
    assert response.json() == {"MessageID": "abc"}
    assert response.headers["x-seen"] == "1"
    assert response.encoding == "utf-8"
    assert response.request.method == "POST" and response.request.url == server.url + "/email?x=1"
    (request,) = server.requests
    assert request["line"] == "POST /email?x=1 HTTP/1.1"
    assert request["body"] == body.encode()
    assert request["headers"]["content-length"] == str(len(body.encode()))
    assert request["headers"]["user-agent"] == "django-anymail/test"
    assert request["headers"]["host"] == f"127.0.0.1:{server.server.server_address[1]}"
    assert session.lean_calls == 1


def test_basic_auth_and_query_parameters_are_sent_as_requests_would():
    with ScriptedHTTP(lambda request: ok()) as server:
        session = LeanSession()
        session.request("POST", server.url + "/v3/send", data="{}", params={"a": "1 2"}, auth=("api", "key"))
    (request,) = server.requests
    assert request["line"] == "POST /v3/send?a=1+2 HTTP/1.1"
    assert request["headers"]["authorization"] == requests.auth._basic_auth_str("api", "key")


def test_calls_share_one_kept_alive_connection():
    with ScriptedHTTP(lambda request: ok()) as server:
        session = LeanSession()
        for _ in range(5):
            assert session.request("POST", server.url + "/email", data="{}", timeout=5).status_code == 200
    assert server.connections == 1
    assert len(server.requests) == 5


def test_a_connection_the_server_closed_while_idle_is_replaced_before_a_call_goes_out():
    with ScriptedHTTP(lambda request: ok(close=True)) as server:
        session = LeanSession()
        session.request("POST", server.url + "/email", data="{}", timeout=5)
        time.sleep(0.1)  # the server has closed its end
        assert session.request("POST", server.url + "/email", data="{}", timeout=5).status_code == 200
    assert server.connections == 2
    assert len(server.requests) == 2  # each call reached the server exactly once


def test_a_kept_alive_connection_the_server_dropped_without_notice_is_not_reused():
    # The answer promises keep-alive, then the server hangs up while the client is idle.
    with ScriptedHTTP(lambda request: (ok(), "then close")) as server:
        session = LeanSession()
        session.request("POST", server.url + "/email", data="{}", timeout=5)
        time.sleep(0.1)
        assert session.request("POST", server.url + "/email", data="{}", timeout=5).status_code == 200
    assert server.connections == 2
    assert len(server.requests) == 2


def _classified(exc: requests.RequestException) -> Exception:
    wrapped = type("AnymailRequestsAPIError", (AnymailRequestsAPIError, type(exc)), {})("Error posting")
    wrapped.__cause__ = exc
    return classify(wrapped)


def test_a_request_that_went_out_and_got_no_answer_is_uncertain():
    with ScriptedHTTP(lambda request: None) as server:
        session = LeanSession()
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            session.request("POST", server.url + "/email", data="{}", timeout=5)
    assert len(server.requests) == 1
    assert isinstance(_classified(caught.value), UncertainSendError)


def test_a_read_timeout_is_uncertain():
    def slow(request):
        time.sleep(0.5)
        return ok()

    with ScriptedHTTP(slow) as server:
        session = LeanSession()
        with pytest.raises(requests.exceptions.ReadTimeout) as caught:
            session.request("POST", server.url + "/email", data="{}", timeout=(1, 0.1))
    assert isinstance(_classified(caught.value), UncertainSendError)


def test_nobody_listening_is_transient_not_uncertain():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = LeanSession()
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.request("POST", f"http://127.0.0.1:{port}/email", data="{}", timeout=1)
    error = _classified(caught.value)
    assert isinstance(error, TransientSendError) and not isinstance(error, UncertainSendError)


def test_a_header_that_would_split_the_request_is_refused():
    with ScriptedHTTP(lambda request: ok()) as server:
        session = LeanSession()
        with pytest.raises(requests.exceptions.InvalidHeader):
            session.request("POST", server.url + "/email", data="{}", headers={"X-A": "b\r\nX-Injected: 1"})
    assert server.requests == []


def test_calls_it_does_not_handle_go_through_requests():
    with ScriptedHTTP(lambda request: ok()) as server:
        session = LeanSession()
        response = session.request(
            "POST", server.url + "/upload", files={"f": ("a.txt", b"hello")}, timeout=5
        )
    assert response.status_code == 200
    assert session.lean_calls == 0
    assert b"hello" in server.requests[0]["body"]


def test_a_head_call_goes_through_requests_and_its_bodiless_answer_is_read():
    # The answer's Content-Length describes the body a GET would get; none follows.
    with ScriptedHTTP(lambda request: ok()) as server:
        session = LeanSession()
        response = session.request("HEAD", server.url + "/messages", timeout=2)
    assert response.status_code == 200
    assert response.content == b""
    assert session.lean_calls == 0


def test_the_digest_backend_sends_through_it(postmark_at_fake_esp):
    from mail.build import build_message
    from subscribers.links import list_headers

    esp, connection = postmark_at_fake_esp
    assert use_lean_session(connection)
    assert connection.session.headers["User-Agent"].startswith("django-anymail/")
    message = build_message(
        to="reader@example.org",
        subject="Today's papers",
        text="Papers",
        html="<p>Papers</p>",
        headers=list_headers(unsubscribe_url="https://example.org/u/t/"),
    )
    assert connection.send_messages([message]) == 1
    assert connection.session.lean_calls == 1
    assert message.anymail_status.message_id
    assert [accepted.to for accepted in esp.accepted] == ["reader@example.org"]


class CountingSocket:
    """A socket that counts its writes."""

    def __init__(self, sock):
        self.sock = sock
        self.writes = 0

    def sendall(self, data):
        self.writes += 1
        return self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_headers_and_body_leave_in_one_write():
    with ScriptedHTTP(lambda request: ok()) as server:
        session = LeanSession()
        session.request("POST", server.url + "/email", data="{}", timeout=5)
        ((key, sock),) = session._sockets.items()
        counting = session._sockets[key] = CountingSocket(sock)
        session.request("POST", server.url + "/email", data=json.dumps({"HtmlBody": "x" * 60_000}), timeout=5)
    assert counting.writes == 1
    assert len(server.requests[1]["body"]) > 60_000


@pytest.fixture
def tls_server_context(tmp_path):
    """A TLS context for a loopback server, and the CA file that trusts it."""
    import ssl

    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


def test_https_calls_verify_the_server_against_the_sessions_ca_bundle(tls_server_context):
    context, ca_file = tls_server_context
    with ScriptedHTTP(lambda request: ok({"MessageID": "tls"}), tls=context) as server:
        session = LeanSession()
        session.verify = ca_file
        response = session.request("POST", server.url + "/email", data="{}", timeout=5)
    assert response.json() == {"MessageID": "tls"}
    assert session.lean_calls == 1


def test_https_refuses_a_server_its_ca_bundle_does_not_trust(tls_server_context):
    context, _ = tls_server_context
    with ScriptedHTTP(lambda request: ok(), tls=context) as server:
        session = LeanSession()  # certifi's bundle, as requests would use
        with pytest.raises(requests.exceptions.SSLError):
            session.request("POST", server.url + "/email", data="{}", timeout=5)
    assert server.requests == []


def in_pieces(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


def test_a_chunked_answer_cut_anywhere_is_read_whole_on_a_connection_kept_alive():
    body = json.dumps({"MessageID": "m-7", "Message": "OK"}).encode()
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: r-1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:9], body[9:]))
        + b"0\r\n\r\n"
    )
    # Cut inside the status line, a header name, the blank line and a chunk size.
    answer = in_pieces(chunked, 7, 40, 101, 104, 116)
    with ScriptedHTTP(lambda request: answer) as server:
        session = LeanSession()
        first = session.request("POST", server.url + "/email", data="{}", timeout=5)
        second = session.request("POST", server.url + "/email", data="{}", timeout=5)
    assert first.status_code == 200 and first.reason == "OK"
    assert first.json() == {"MessageID": "m-7", "Message": "OK"}
    assert first.headers["x-request-id"] == "r-1"
    assert second.json() == first.json()
    assert server.connections == 1


def test_an_answer_whose_body_runs_to_the_close_is_read_and_its_connection_not_reused():
    body = json.dumps({"MessageID": "m-8"}).encode()
    with ScriptedHTTP(lambda request: (b"HTTP/1.1 200 OK\r\n\r\n" + body, "then close")) as server:
        session = LeanSession()
        assert session.request("POST", server.url + "/email", data="{}", timeout=5).json() == {
            "MessageID": "m-8"
        }
        assert session._sockets == {}
        session.request("POST", server.url + "/email", data="{}", timeout=5)
    assert server.connections == 2


def test_an_http_1_0_answer_is_not_kept_alive():
    with ScriptedHTTP(lambda request: ok().replace(b"HTTP/1.1", b"HTTP/1.0", 1)) as server:
        session = LeanSession()
        for _ in range(2):
            assert session.request("POST", server.url + "/email", data="{}", timeout=5).status_code == 200
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((b"SMTP ready\r\n\r\n", "then close"), id="not-http"),
        pytest.param((ok()[:-5], "then close"), id="body-cut-short"),
        pytest.param(
            (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", "then close"), id="endless-headers"
        ),
        pytest.param((b"HTTP/1.1 100 Continue\r\n\r\n", "then close"), id="interim-only"),
    ],
)
def test_an_answer_that_cannot_be_read_is_uncertain(answer):
    with ScriptedHTTP(lambda request: answer) as server:
        session = LeanSession()
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            session.request("POST", server.url + "/email", data="{}", timeout=5)
    assert len(server.requests) == 1
    assert session._sockets == {}
    assert isinstance(_classified(caught.value), UncertainSendError)
