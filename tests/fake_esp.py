"""A Postmark-, SendGrid-, Mailgun-, Mailjet- and SparkPost-compatible fake ESP on loopback,
for tests and benchmarks.

anymail's Postmark backend talks to it over real HTTP when
ANYMAIL["POSTMARK_API_URL"] points here, and its SendGrid backend when
ANYMAIL["SENDGRID_API_URL"] is this URL plus `v3/`. It checks every message the
way a strict ESP (and Gmail's bulk-sender rules) would: one distinct recipient,
both parts, the RFC 8058 unsubscribe headers, a List-Id, and HTML no larger than
Gmail's 102 KB clipping limit. It counts accepted messages per recipient, so a
test can prove there were no duplicates and nothing went missing.

A SendGrid call (POST /v3/mail/send) carries many messages: one per
"personalization", each with its own recipient, substitutions and headers
(merged over the call's headers). Each is checked as if it were a message of
its own, the HTML size after its substitutions included; the size is computed
from the shared HTML and each value's length, without building every copy. A
call naming a refused recipient is answered 400 as a whole, with one error per
refused address pointing at its personalization, as SendGrid does for addresses
it will not take; nothing in that call is sent.

Mailgun (POST /v3/<domain>/messages, a form with `recipient-variables`),
Mailjet (POST /v3.1/send, one entry in Messages per recipient over Globals,
`{{var:KEY}}` with TemplateLanguage) and SparkPost (POST /api/v1/transmissions,
`{{KEY}}`/`{{{KEY}}}` from each recipient's substitution_data) are answered the
way each ESP answers, and each recipient's copy is built in full: its values
substituted in subject, HTML, text and headers as that ESP would, then checked
like a message of its own, plus: no placeholder or template markup left over,
and the body links to the same unsubscribe URL as its List-Unsubscribe header.
Refused recipients get each ESP's own answer: Mailgun refuses the whole call
(400, naming no address), Mailjet fails that recipient's message only, and
SparkPost accepts the call and counts the rejected recipients without naming
them.

Like a real ESP API it takes time to answer: `latency` seconds per send
call (`--latency-ms`, or `latency_ms` in the faults). It keeps a message the
moment the request arrives and only then waits out its latency, so a client
that goes away before the answer (a worker killed mid-call, a read timeout)
leaves the message sent, as it would be at a real ESP. Postmark's outbound
message search answers which messages carry a metadata value
(GET /messages/outbound?metadata_delivery_id=ID&count=1&offset=0).
It serves each connection in a thread of its own, with a deep listen backlog,
so hundreds of calls can wait on it at once.

Faults can be injected: a share of calls failing with 500, 429 with
Retry-After, calls that hang past the client's timeout, answers of 200 whose
body is not JSON although the message was taken, and recipients that are
permanently rejected.

Run standalone with `python -m tests.fake_esp --port 8025`; GET /_stats returns
the counters as JSON (with the wall-clock time of the last accepted message),
GET /_recipients the count per recipient, POST /_faults sets faults, POST
/_reset clears everything.
"""

import argparse
import base64
import contextlib
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from html import escape as html_escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_HTML_BYTES = 102 * 1024


@dataclass
class Faults:
    fail_rate: float = 0.0  # share of calls answered 500
    rate_limit_first: int = 0  # this many calls answered 429 first
    retry_after: int = 1
    hang_first: int = 0  # this many calls hang for hang_seconds, then fail
    hang_seconds: float = 5.0
    reject: set[str] = field(default_factory=set)  # recipients refused (Postmark 422/406, SendGrid 400)
    forbid_first: int = 0  # SendGrid: this many calls refused 403 (a sender it does not know)
    garble_first: int = 0  # this many accepted calls answered 200 with a body that is not JSON
    latency_ms: float = 0.0  # every send call answers after this long (the message is kept first)
    seed: int = 1234


@dataclass
class Accepted:
    message_id: str
    to: str
    subject: str
    headers: dict[str, str]
    html_bytes: int
    text: str
    html: str
    metadata: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.time)  # when the ESP took it


class FakeESPState:
    def __init__(self, *, keep_bodies: bool = True, latency_ms: float = 0.0):
        self.lock = threading.Lock()
        self.keep_bodies = keep_bodies
        self.default_latency_ms = latency_ms
        self.reset()

    def reset(self, faults: Faults | None = None):
        with self.lock:
            self.faults = faults or Faults(latency_ms=self.default_latency_ms)
            self.random = random.Random(self.faults.seed)
            self.calls = 0
            self.accepted: list[Accepted] = []
            self.per_recipient: Counter[str] = Counter()
            self.invalid: list[dict] = []
            self.faulted: Counter[str] = Counter()
            self.max_html_bytes = 0
            self.last_accepted_at: float | None = None
            # metadata delivery_id -> message ids, for the message search
            self.by_delivery: dict[str, list[str]] = {}
            self.in_flight = 0
            self.max_in_flight = 0
            self.searches = 0

    def stats(self) -> dict:
        with self.lock:
            duplicates = sum(count - 1 for count in self.per_recipient.values() if count > 1)
            return {
                "calls": self.calls,
                "accepted": len(self.accepted) if self.keep_bodies else sum(self.per_recipient.values()),
                "recipients": len(self.per_recipient),
                "duplicates": duplicates,
                "invalid": len(self.invalid),
                "invalid_examples": self.invalid[:5],
                "faulted": dict(self.faulted),
                "max_html_bytes": self.max_html_bytes,
                "last_accepted_at": self.last_accepted_at,
                "max_in_flight": self.max_in_flight,
                "searches": self.searches,
            }

    def remember(self, message_id: str, metadata: dict | None) -> None:
        """Index an accepted message by its delivery id (call with the lock held)."""
        delivery_id = str((metadata or {}).get("delivery_id") or "")
        if delivery_id:
            self.by_delivery.setdefault(delivery_id, []).append(message_id)

    def search(self, delivery_id: str) -> list[str]:
        with self.lock:
            self.searches += 1
            return list(self.by_delivery.get(delivery_id, ()))

    def recipients(self) -> Counter:
        with self.lock:
            return Counter(self.per_recipient)


def validate(message: dict, *, html_bytes: int | None = None) -> list[str]:
    problems = []
    to = message.get("To") or ""
    if not to or "," in to:
        problems.append(f"To must be exactly one recipient, got {to!r}")
    if not message.get("From"):
        problems.append("From is missing")
    if not message.get("Subject"):
        problems.append("Subject is missing")
    html = message.get("HtmlBody") or ""
    if not html:
        problems.append("HtmlBody is missing")
    if not message.get("TextBody"):
        problems.append("TextBody is missing")
    size = len(html.encode()) if html_bytes is None else html_bytes
    if size > MAX_HTML_BYTES:
        problems.append(f"HtmlBody is {size} bytes, over {MAX_HTML_BYTES}")
    headers = {h.get("Name", "").lower(): h.get("Value", "") for h in message.get("Headers") or []}
    unsubscribe = headers.get("list-unsubscribe", "")
    if not (unsubscribe.startswith("<http") and unsubscribe.endswith(">")):
        problems.append(f"List-Unsubscribe must be <https://...>, got {unsubscribe!r}")
    if headers.get("list-unsubscribe-post") != "List-Unsubscribe=One-Click":
        problems.append("List-Unsubscribe-Post must be List-Unsubscribe=One-Click")
    if not headers.get("list-id"):
        problems.append("List-Id is missing")
    return problems


class _Substituted:
    """Sizes of one shared text after per-recipient substitutions, without
    building the copies: each key's occurrences are counted once per call."""

    def __init__(self, text: str):
        self.text = text
        self.size = len(text.encode())
        self.counts: dict[str, int] = {}

    def size_with(self, substitutions: dict[str, str]) -> int:
        missing = [key for key in substitutions if key not in self.counts]
        if missing:
            self._count(missing)
        size = self.size
        for key, value in substitutions.items():
            count = self.counts[key]
            if count:
                size += count * (len((value or "").encode()) - len(key.encode()))
        return size

    def _count(self, keys: list[str]) -> None:
        """Occurrences of each key, in one pass over the text when no key holds
        another (a batch's keys are alike: every recipient has the same ones)."""
        keys = [key for key in dict.fromkeys(keys) if key]
        if any(a != b and a in b for a in keys for b in keys):
            found = Counter({key: self.text.count(key) for key in keys})
        else:
            pattern = re.compile("|".join(map(re.escape, keys)))
            found = Counter(pattern.findall(self.text))
        for key in keys:
            self.counts[key] = found[key]
        self.counts.setdefault("", 0)

    def filled(self, substitutions: dict[str, str]) -> str:
        text = self.text
        for key, value in substitutions.items():
            text = text.replace(key, value or "")
        return text


def sendgrid_messages(payload: dict, *, keep_bodies: bool) -> tuple[list[Accepted], list[dict]]:
    """The individual messages a SendGrid v3 call asks for, and what is wrong with any of them."""
    content = {part.get("type"): part.get("value") or "" for part in payload.get("content") or []}
    html = _Substituted(content.get("text/html", ""))
    text = _Substituted(content.get("text/plain", ""))
    global_headers = {str(k).lower(): (k, v) for k, v in (payload.get("headers") or {}).items()}
    messages: list[Accepted] = []
    problems: list[dict] = []
    seen: set[str] = set()
    for index, personalization in enumerate(payload.get("personalizations") or []):
        to_list = personalization.get("to") or []
        to = str(to_list[0].get("email", "")) if len(to_list) == 1 else ""
        substitutions = personalization.get("substitutions") or {}
        headers = dict(global_headers)
        headers.update({str(k).lower(): (k, v) for k, v in (personalization.get("headers") or {}).items()})
        flat = dict(headers.values())
        wrong = validate(
            {
                "To": to if not (personalization.get("cc") or personalization.get("bcc")) else f"{to},cc",
                "From": (payload.get("from") or {}).get("email"),
                "Subject": personalization.get("subject") or payload.get("subject"),
                "HtmlBody": html.text,
                "TextBody": text.text,
                "Headers": [{"Name": name, "Value": value} for name, value in flat.items()],
            },
            html_bytes=(size := html.size_with(substitutions)),
        )
        if to.lower() in seen:
            wrong.append(f"{to} appears in more than one personalization")
        seen.add(to.lower())
        if wrong:
            problems.append({"to": to, "problems": wrong, "field": f"personalizations.{index}"})
            continue
        metadata = {**(payload.get("custom_args") or {}), **(personalization.get("custom_args") or {})}
        messages.append(
            Accepted(
                message_id=str(uuid.uuid4()),
                to=to,
                subject=personalization.get("subject") or payload.get("subject", ""),
                headers=flat,
                html_bytes=size,
                text=text.filled(substitutions) if keep_bodies else "",
                html=html.filled(substitutions) if keep_bodies else "",
                metadata={str(k): str(v) for k, v in metadata.items()},
            )
        )
    return messages, problems


# --- Mailgun, Mailjet and SparkPost: each recipient's copy, built as that ESP builds it ---

_OUR_PLACEHOLDER = re.compile(r"PBX[A-Z]+[0-9]*PBX")


@dataclass
class Copy:
    """One recipient's message as the ESP would deliver it, with what is wrong with it."""

    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    from_email: str = ""
    message_id: str = ""
    problems: list[str] = field(default_factory=list)
    refused: bool = False


def personal_problems(copy: Copy, leftover: re.Pattern) -> list[str]:
    problems = validate(
        {
            "To": copy.to,
            "From": copy.from_email,
            "Subject": copy.subject,
            "HtmlBody": copy.html,
            "TextBody": copy.text,
            "Headers": [{"Name": name, "Value": value} for name, value in copy.headers.items()],
        }
    )
    for part, content in (("subject", copy.subject), ("HTML", copy.html), ("text", copy.text)):
        if leftover.search(content) or _OUR_PLACEHOLDER.search(content):
            problems.append(f"unfilled placeholder or template markup in the {part}")
    for name, value in copy.headers.items():
        if leftover.search(value):
            problems.append(f"unfilled placeholder in header {name}")
    lowered = {name.lower(): value for name, value in copy.headers.items()}
    unsubscribe = lowered.get("list-unsubscribe", "").strip("<>")
    if unsubscribe and (unsubscribe not in copy.text or unsubscribe not in copy.html):
        problems.append("the body does not link to the List-Unsubscribe URL of this recipient")
    return problems


def _substitute(
    pattern: re.Pattern, text: str, value_of: Callable[[re.Match], str | None]
) -> tuple[str, list[str]]:
    missing: list[str] = []

    def replace(match: re.Match) -> str:
        value = value_of(match)
        if value is None:
            missing.append(match.group(0))
            return match.group(0)
        return str(value)

    return pattern.sub(replace, text), missing


def _filled_copy(
    *,
    to: str,
    from_email: str,
    parts: dict[str, str],
    headers: dict[str, str],
    fill: Callable[[str, str], tuple[str, list[str]]],
) -> tuple[Copy, list[str]]:
    """One recipient's copy, each of its parts (subject, html, text) and headers passed
    through `fill(part, text)`; with the placeholders nothing filled."""
    copy = Copy(to=to, from_email=from_email, subject="", html="", text="", headers={})
    missing: list[str] = []
    for name, text in parts.items():
        filled, lost = fill(name, text)
        setattr(copy, name, filled)
        missing += lost
    for name, value in headers.items():
        copy.headers[name], lost = fill("header", value)
        missing += lost
    return copy, missing


MAILGUN_VARIABLE = re.compile(r"%recipient\.([^%\s]+)%")
MAILGUN_LEFTOVER = re.compile(r"%recipient\.")


def mailgun_copies(form: dict[str, list[str]]) -> tuple[list[Copy], list[str]]:
    """The messages a Mailgun send asks for: one per `to` address when recipient-variables
    make it a batch; otherwise one message that every address sees."""
    to = form.get("to", [])
    call_problems = []
    if len(to) > 1000:
        call_problems.append("Too many recipients: at most 1000 per message")
    raw_variables = (form.get("recipient-variables") or [None])[0]
    try:
        variables = json.loads(raw_variables) if raw_variables else None
    except ValueError:
        return [], ["recipient-variables is not valid JSON"]
    headers_template = {key[2:]: values[0] for key, values in form.items() if key.startswith("h:")}
    copies = []
    for address in to:
        mine = (variables or {}).get(address, {})

        def fill(part: str, text: str, mine: dict = mine) -> tuple[str, list[str]]:
            return _substitute(MAILGUN_VARIABLE, text, lambda m: mine.get(m.group(1)))

        copy, missing = _filled_copy(
            to=address if variables is not None else ",".join(to),
            from_email=(form.get("from") or [""])[0],
            parts={name: (form.get(name) or [""])[0] for name in ("subject", "html", "text")},
            headers=headers_template,
            fill=fill,
        )
        if missing:
            copy.problems.append(f"no recipient variable for {', '.join(sorted(set(missing)))}")
        copies.append(copy)
    return copies, call_problems


MAILJET_VARIABLE = re.compile(r'\{\{var:([A-Za-z0-9_]+)(?::"([^"]*)")?\}\}')
MAILJET_LEFTOVER = re.compile(r"\{\{|\{%")


def _merged(globals_: dict, message: dict) -> dict:
    merged = {**globals_, **message}
    for key in ("Headers", "Variables"):
        if isinstance(globals_.get(key), dict) or isinstance(message.get(key), dict):
            merged[key] = {**(globals_.get(key) or {}), **(message.get(key) or {})}
    return merged


def mailjet_copies(payload: dict) -> tuple[list[Copy], list[str]]:
    """The messages a Mailjet v3.1 send asks for: Globals merged under each of Messages."""
    messages = payload.get("Messages") or []
    if not messages or len(messages) > 50:
        return [], ["between 1 and 50 messages are allowed per call"]
    copies = []
    for entry in messages:
        message = _merged(payload.get("Globals") or {}, entry)
        to = message.get("To") or []
        variables = message.get("Variables") or {}
        templating = bool(message.get("TemplateLanguage"))
        copy = Copy(
            to=",".join(str(t.get("Email", "")) for t in to),
            from_email=str((message.get("From") or {}).get("Email", "")),
            subject="",
            html="",
            text="",
            headers={str(k): str(v) for k, v in (message.get("Headers") or {}).items()},
        )
        missing: list[str] = []
        for name, key in (("subject", "Subject"), ("html", "HTMLPart"), ("text", "TextPart")):
            content = str(message.get(key) or "")
            if templating:
                content, lost = _substitute(
                    MAILJET_VARIABLE, content, lambda m, v=variables: v.get(m.group(1), m.group(2))
                )
                missing += lost
            setattr(copy, name, content)
        if missing:
            copy.problems.append(f"template error: no value for {', '.join(sorted(set(missing)))}")
        copies.append(copy)
    return copies, []


SPARKPOST_VARIABLE = re.compile(r"\{\{(\{?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}(\}?)")
SPARKPOST_LEFTOVER = re.compile(r"\{\{")


def sparkpost_copies(payload: dict) -> tuple[list[Copy], list[str]]:
    """The messages a SparkPost transmission asks for: one per recipient, each with its
    substitution_data over the transmission's. Double braces HTML-escape the value in the
    HTML part, triple braces insert it as it is."""
    content = payload.get("content") or {}
    recipients = payload.get("recipients") or []
    if not recipients:
        return [], ["at least one recipient is required"]
    copies = []
    for recipient in recipients:
        data = {**(payload.get("substitution_data") or {}), **(recipient.get("substitution_data") or {})}

        def value_of(match: re.Match, *, escape: bool, data: dict = data) -> str | None:
            raw = bool(match.group(1)) and bool(match.group(3))
            value = data.get(match.group(2))
            if value is None:
                return None
            return html_escape(str(value)) if escape and not raw else str(value)

        def fill(part: str, text: str) -> tuple[str, list[str]]:
            return _substitute(SPARKPOST_VARIABLE, text, partial(value_of, escape=part == "html"))

        address = recipient.get("address") or {}
        copy, missing = _filled_copy(
            to=str(address.get("email", "")),
            from_email=str(content.get("from", "")),
            parts={name: str(content.get(name) or "") for name in ("subject", "html", "text")},
            headers={name: str(value) for name, value in (content.get("headers") or {}).items()},
            fill=fill,
        )
        if missing:
            copy.problems.append(f"no substitution data for {', '.join(sorted(set(missing)))}")
        copies.append(copy)
    return copies, []


def make_handler(state: FakeESPState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real ESP API offers

        def setup(self):
            super().setup()
            # Headers and body go out in separate writes; without this, Nagle's
            # algorithm and delayed ACKs add 40 ms to every call.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format, *args):  # quiet
            pass

        def _reply(self, status: int, body, headers: dict | None = None, *, raw: bytes | None = None):
            if getattr(self, "sending", False):
                self._wait_latency()
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _wait_latency(self):
            """The ESP's think time, after the message was kept: a client that goes
            away meanwhile leaves it sent."""
            self.sending = False
            latency = state.faults.latency_ms / 1000
            if latency:
                time.sleep(latency)

        def _garbled(self) -> bool:
            with state.lock:
                if state.faulted["garbled"] < state.faults.garble_first:
                    state.faulted["garbled"] += 1
                    return True
            return False

        def do_GET(self):
            if self.path.startswith("/messages/outbound"):
                self._search()
                return
            if self.path.startswith("/_stats"):
                self._reply(200, state.stats())
            elif self.path.startswith("/_recipients"):
                self._reply(200, dict(state.recipients()))
            else:
                self._reply(404, {"ErrorCode": 404, "Message": "not found"})

        def _search(self):
            if not self.headers.get("X-Postmark-Server-Token"):
                self._reply(401, {"ErrorCode": 10, "Message": "No Server API token was supplied"})
                return
            query = parse_qs(urlsplit(self.path).query)
            if "count" not in query or "offset" not in query:
                self._reply(
                    422, {"ErrorCode": 1001, "Message": "The 'count' and 'offset' parameters are required"}
                )
                return
            wanted = (query.get("metadata_delivery_id") or [""])[0]
            found = state.search(wanted) if wanted else []
            messages = [
                {"MessageID": message_id, "Metadata": {"delivery_id": wanted}, "Status": "Sent"}
                for message_id in found
            ]
            self._reply(200, {"TotalCount": len(messages), "Messages": messages[: int(query["count"][0])]})

        def do_POST(self):
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._post()
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _post(self):
            raw = self._body()
            if self.path.startswith("/_reset"):
                state.reset()
                self._reply(200, {"ok": True})
                return
            if self.path.startswith("/_faults"):
                spec = json.loads(raw or b"{}")
                spec["reject"] = set(spec.get("reject", []))
                spec.setdefault("latency_ms", state.default_latency_ms)
                state.reset(Faults(**spec))
                self._reply(200, {"ok": True})
                return
            path = self.path.rstrip("/")
            self.sending = True
            if path == "/v3/mail/send":
                self._sendgrid(raw)
                return
            if path.startswith("/v3/") and path.endswith("/messages"):
                self._mailgun(raw)
                return
            if path == "/v3.1/send":
                self._mailjet(raw)
                return
            if path == "/api/v1/transmissions":
                self._sparkpost(raw)
                return
            if path not in ("/email", "/email/batch"):
                self._reply(404, {"ErrorCode": 404, "Message": f"unknown endpoint {self.path}"})
                return
            if not self.headers.get("X-Postmark-Server-Token"):
                self._reply(401, {"ErrorCode": 10, "Message": "No Server API token was supplied"})
                return

            fault = self._fault()
            if fault == "hang":
                time.sleep(state.faults.hang_seconds)
                self._reply(500, {"ErrorCode": 500, "Message": "timed out upstream"})
                return
            if fault == "429":
                self._reply(
                    429,
                    {"ErrorCode": 429, "Message": "Rate limit exceeded"},
                    {"Retry-After": str(state.faults.retry_after)},
                )
                return
            if fault == "500":
                self._reply(500, {"ErrorCode": 500, "Message": "Internal server error"})
                return

            try:
                payload = json.loads(raw)
            except ValueError:
                self._reply(400, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
                return
            if path == "/email":
                status, body = self._accept(payload)
                if status == 200 and self._garbled():
                    self._reply(200, None, raw=b"<html>upstream proxy: OK</html>")
                    return
                self._reply(status, body)
            else:
                results = [self._accept(one)[1] for one in payload]
                self._reply(200, results)

        def _sendgrid(self, raw: bytes):
            def errors(*items):
                return {"errors": [{"message": m, "field": f, "help": None} for m, f in items]}

            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
                self._reply(401, errors(("Permission denied, wrong credentials", None)))
                return
            fault = self._fault()
            if fault == "hang":
                time.sleep(state.faults.hang_seconds)
                self._reply(500, errors(("timed out upstream", None)))
                return
            if fault == "429":
                self._reply(
                    429,
                    errors(("too many requests", None)),
                    {"Retry-After": str(state.faults.retry_after)},
                )
                return
            if fault == "500":
                self._reply(500, errors(("Internal server error", None)))
                return
            with state.lock:
                forbid = state.faulted["403"] < state.faults.forbid_first
                if forbid:
                    state.faulted["403"] += 1
            if forbid:
                message = "The from address does not match a verified Sender Identity."
                self._reply(403, errors((message, "from")))
                return
            try:
                payload = json.loads(raw)
            except ValueError:
                self._reply(400, errors(("Bad Request", None)))
                return
            personalizations = payload.get("personalizations") or []
            if not personalizations or len(personalizations) > 1000:
                self._reply(
                    400, errors(("between 1 and 1000 personalizations are required", "personalizations"))
                )
                return
            refused = [
                (f"The recipient {to.get('email')} has been refused.", f"personalizations.{index}.to.0.email")
                for index, p in enumerate(personalizations)
                for to in (p.get("to") or [])[:1]
                if str(to.get("email", "")).lower() in state.faults.reject
            ]
            if refused:
                self._reply(400, errors(*refused))
                return
            messages, problems = sendgrid_messages(payload, keep_bodies=state.keep_bodies)
            if problems:
                with state.lock:
                    state.invalid.extend(problems)
                self._reply(400, errors(*[("; ".join(p["problems"]), p["field"]) for p in problems]))
                return
            with state.lock:
                for message in messages:
                    state.per_recipient[message.to.lower()] += 1
                    state.remember(message.message_id, message.metadata)
                    state.max_html_bytes = max(state.max_html_bytes, message.html_bytes)
                    if state.keep_bodies:
                        state.accepted.append(message)
                state.last_accepted_at = time.time()
            self._reply_empty(202, {"X-Message-Id": uuid.uuid4().hex[:22]})

        # --- Mailgun, Mailjet, SparkPost ------------------------------------------------

        def _basic_auth(self) -> tuple[str, str] | None:
            header = self.headers.get("Authorization") or ""
            if not header.startswith("Basic "):
                return None
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None
            return (user, password) if user and password else None

        def _json_copies(
            self,
            raw: bytes,
            answer: Callable[[str], dict],
            parse_copies: Callable[[dict], tuple[list[Copy], list[str]]],
            *,
            malformed: str,
            problem_status: int,
        ) -> list[Copy] | None:
            """Answer an injected fault, a bad body or a bad call in the ESP's shape (None),
            or return each recipient's copy."""
            if self._injected(answer):
                return None
            try:
                payload = json.loads(raw)
            except ValueError:
                self._reply(400, answer(malformed))
                return None
            copies, call_problems = parse_copies(payload)
            if call_problems:
                self._reply(problem_status, answer("; ".join(call_problems)))
                return None
            return copies

        def _injected(self, answer: Callable[[str], dict]) -> bool:
            """Answer an injected fault in the ESP's own error shape; True when one was."""
            fault = self._fault()
            if fault == "hang":
                time.sleep(state.faults.hang_seconds)
                self._reply(500, answer("timed out upstream"))
            elif fault == "429":
                self._reply(429, answer("Too many requests"), {"Retry-After": str(state.faults.retry_after)})
            elif fault == "500":
                self._reply(500, answer("Internal server error"))
            else:
                return False
            return True

        def _accept_copies(
            self, copies: list[Copy], leftover: re.Pattern, *, all_or_nothing: bool
        ) -> list[Copy]:
            """Check every copy (refused ones are left out) and record the good ones;
            with all_or_nothing, one bad copy stops the whole call, as an ESP that
            validates a call before sending any of it does."""
            good = []
            seen: set[str] = set()
            for copy in copies:
                if copy.refused:
                    continue
                copy.problems += personal_problems(copy, leftover)
                if copy.to.lower() in seen:
                    copy.problems.append(f"{copy.to} is a recipient more than once in one call")
                seen.add(copy.to.lower())
                if copy.problems:
                    with state.lock:
                        state.invalid.append({"to": copy.to, "problems": copy.problems})
                    continue
                good.append(copy)
            if all_or_nothing and len(good) < sum(1 for copy in copies if not copy.refused):
                return []
            with state.lock:
                for copy in good:
                    state.per_recipient[copy.to.lower()] += 1
                    size = len(copy.html.encode())
                    state.max_html_bytes = max(state.max_html_bytes, size)
                    if state.keep_bodies:
                        state.accepted.append(
                            Accepted(
                                message_id=copy.message_id,
                                to=copy.to,
                                subject=copy.subject,
                                headers=copy.headers,
                                html_bytes=size,
                                text=copy.text,
                                html=copy.html,
                            )
                        )
                if good:
                    state.last_accepted_at = time.time()
            return good

        def _mailgun(self, raw: bytes) -> None:
            def answer(message: str) -> dict:
                return {"message": message}

            if not self._basic_auth():
                self._reply(401, answer("Invalid private key"))
                return
            if self._injected(answer):
                return
            form = parse_qs(raw.decode(), keep_blank_values=True)
            if any(address.lower() in state.faults.reject for address in form.get("to", [])):
                # Mailgun refuses the whole call and names no address.
                self._reply(400, answer("'to' parameter is not a valid address. please check documentation"))
                return
            copies, call_problems = mailgun_copies(form)
            if call_problems:
                self._reply(400, answer("; ".join(call_problems)))
                return
            message_id = f"<{uuid.uuid4().hex}@fake.mailgun>"
            for copy in copies:
                copy.message_id = message_id
            if not self._accept_copies(copies, MAILGUN_LEFTOVER, all_or_nothing=True):
                problems = next(copy.problems for copy in copies if copy.problems)
                self._reply(400, answer("invalid message: " + "; ".join(problems)))
                return
            self._reply(200, {"id": message_id, "message": "Queued. Thank you."})

        def _mailjet(self, raw: bytes) -> None:
            def answer(message: str) -> dict:
                return {"ErrorIdentifier": str(uuid.uuid4()), "ErrorCode": "mj-0000", "ErrorMessage": message}

            if not self._basic_auth():
                self._reply(401, answer("API key authentication/authorization failure"))
                return
            copies = self._json_copies(
                raw, answer, mailjet_copies, malformed="Malformed JSON", problem_status=400
            )
            if copies is None:
                return
            for copy in copies:
                copy.refused = copy.to.lower() in state.faults.reject
                copy.message_id = str(random.randrange(10**15, 10**16))
            good = {id(copy) for copy in self._accept_copies(copies, MAILJET_LEFTOVER, all_or_nothing=False)}
            results = []
            for copy in copies:
                if id(copy) in good:
                    results.append(
                        {
                            "Status": "success",
                            "To": [
                                {
                                    "Email": copy.to,
                                    "MessageUUID": str(uuid.uuid4()),
                                    "MessageID": int(copy.message_id),
                                    "MessageHref": "https://api.mailjet.com/v3/REST/message/0",
                                }
                            ],
                        }
                    )
                else:
                    reason = "blocked recipient" if copy.refused else "; ".join(copy.problems)
                    results.append(
                        {
                            "Status": "error",
                            "Errors": [{"ErrorCode": "send-0003", "StatusCode": 400, "ErrorMessage": reason}],
                        }
                    )
            self._reply(200 if good else 400, {"Messages": results})

        def _sparkpost(self, raw: bytes) -> None:
            def answer(message: str) -> dict:
                return {"errors": [{"message": message}]}

            if not self.headers.get("Authorization"):
                self._reply(401, answer("Unauthorized."))
                return
            copies = self._json_copies(
                raw, answer, sparkpost_copies, malformed="invalid JSON", problem_status=422
            )
            if copies is None:
                return
            transmission = str(random.randrange(10**17, 10**18))
            for copy in copies:
                copy.refused = copy.to.lower() in state.faults.reject
                copy.message_id = transmission
            rejected = sum(1 for copy in copies if copy.refused)
            if rejected == len(copies):
                self._reply(422, answer("All provided recipients are invalid or suppressed"))
                return
            good = self._accept_copies(copies, SPARKPOST_LEFTOVER, all_or_nothing=True)
            if not good:
                problems = next(copy.problems for copy in copies if copy.problems)
                self._reply(422, answer("invalid content: " + "; ".join(problems)))
                return
            self._reply(
                200,
                {
                    "results": {
                        "total_rejected_recipients": rejected,
                        "total_accepted_recipients": len(good),
                        "id": transmission,
                    }
                },
            )

        def _reply_empty(self, status: int, headers: dict):
            if getattr(self, "sending", False):
                self._wait_latency()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _fault(self) -> str | None:
            with state.lock:
                state.calls += 1
                faults = state.faults
                if state.faulted["hang"] < faults.hang_first:
                    state.faulted["hang"] += 1
                    return "hang"
                if state.faulted["429"] < faults.rate_limit_first:
                    state.faulted["429"] += 1
                    return "429"
                if faults.fail_rate and state.random.random() < faults.fail_rate:
                    state.faulted["500"] += 1
                    return "500"
            return None

        def _accept(self, message: dict) -> tuple[int, dict]:
            to = message.get("To") or ""
            if to.lower() in state.faults.reject:
                return 422, {
                    "ErrorCode": 406,
                    "Message": "You tried to send to a recipient that has been marked as inactive.\n "
                    f"Found inactive addresses: {to.lower()}.\n Inactive recipients are ones that have "
                    "generated a hard bounce or a spam complaint. ",
                }
            problems = validate(message)
            if problems:
                with state.lock:
                    state.invalid.append({"to": to, "problems": problems})
                return 422, {"ErrorCode": 300, "Message": "; ".join(problems), "To": to}
            message_id = str(uuid.uuid4())
            html = message.get("HtmlBody") or ""
            size = len(html.encode())
            headers = {h["Name"]: h["Value"] for h in message.get("Headers") or []}
            with state.lock:
                state.per_recipient[to.lower()] += 1
                state.remember(message_id, message.get("Metadata"))
                state.max_html_bytes = max(state.max_html_bytes, size)
                state.last_accepted_at = time.time()
                if state.keep_bodies:
                    state.accepted.append(
                        Accepted(
                            message_id=message_id,
                            to=to,
                            subject=message.get("Subject", ""),
                            headers=headers,
                            html_bytes=size,
                            text=message.get("TextBody", ""),
                            html=html,
                            metadata=dict(message.get("Metadata") or {}),
                        )
                    )
            return 200, {
                "To": to,
                "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "MessageID": message_id,
                "ErrorCode": 0,
                "Message": "OK",
            }

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many senders connect at once

    def handle_error(self, request, client_address):
        # A client that gave up on a hanging call closes the socket; that is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeESP:
    """Start with `with FakeESP() as esp:`; point anymail at `esp.url`."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, keep_bodies: bool = True, latency_ms: float = 0.0
    ):
        self.state = FakeESPState(keep_bodies=keep_bodies, latency_ms=latency_ms)
        self.server = _Server((host, port), make_handler(self.state))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "FakeESP":
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def set_faults(self, **spec):
        spec["reject"] = {address.lower() for address in spec.get("reject", ())}
        spec.setdefault("latency_ms", self.state.default_latency_ms)
        self.state.reset(Faults(**spec))

    @property
    def accepted(self) -> list[Accepted]:
        return list(self.state.accepted)

    def stats(self) -> dict:
        return self.state.stats()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-bodies", action="store_true", help="count messages without keeping them")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="answer each send call after this long")
    args = parser.parse_args()
    esp = FakeESP(host=args.host, port=args.port, keep_bodies=not args.no_bodies, latency_ms=args.latency_ms)
    print(esp.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        esp.server.serve_forever()


if __name__ == "__main__":
    main()
