"""Hypothesis-driven hostile requests to every public endpoint: random and huge
bodies, Unicode, CR/LF, wrong methods, forged and replayed tokens, with and without
a CSRF token. Requests go through a client that enforces CSRF, as the site does.
None may cause a 500, and nothing changes unless the request was a valid one, and
then only what that request may change."""

import base64
import ipaddress
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.feedback import make_feedback_token
from digest.models import Delivery, Feedback
from subscribers.models import DeletionRecord, OutgoingEmail, Subscriber, SuppressionEvent
from subscribers.tokens import make_confirm_token, make_data_token, make_manage_token, make_unsubscribe_token
from tests.digest.builders import make_paper
from tests.fuzz.conftest import CSRF_SECRET, HOSTILE_STRINGS, changed, changed_rows, snapshot
from tests.subscribers.factories import SubscriberFactory

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WEBHOOK = "/anymail/postmark/tracking/"
WEBHOOK_SECRET = "hook-user:hook-password"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
FIELDS = [
    "email",
    "topics",
    "interests",
    "frequency",
    "weekday",
    "digest_size",
    "website",
    "action",
    "confirm",
    "List-Unsubscribe",
    "csrfmiddlewaretoken",
]

junk_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=200),
    st.text(
        alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
        max_size=40,
    ),
)
plausible = st.sampled_from(
    [
        "reasoning",
        "agents",
        "daily",
        "weekly",
        "0",
        "6",
        "7",
        "-1",
        "15",
        "16",
        "99999999999999999999",
        "save",
        "pause",
        "resume",
        "unsubscribe",
        "delete",
        "on",
        "One-Click",
        "new@example.org",
    ]
)
field_value = st.one_of(junk_text, plausible, st.lists(st.one_of(junk_text, plausible), max_size=4))
form = st.dictionaries(st.one_of(st.sampled_from(FIELDS), junk_text.filter(bool)), field_value, max_size=8)
raw_body = st.one_of(
    st.binary(max_size=500),
    junk_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"x" * (3 * 1024 * 1024), b"{" * 100000, b"\xff\xfe\x00", b"[]", b"null", b"{}"]),
)
content_type = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=nope",
        "multipart/form-data",
        "application/json",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded; charset=utf-16",
        "text/html; charset=nonsense",
    ]
)
header_value = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=100))


@st.composite
def requests_(draw, *, methods=METHODS):
    """A method, and either form fields or a raw body with a content type, plus hostile
    headers; mostly with the CSRF token a form page would give, sometimes without."""
    method = draw(st.sampled_from(methods))
    headers = {
        "HTTP_USER_AGENT": draw(header_value),
        "HTTP_X_FORWARDED_FOR": draw(header_value),
        "HTTP_ACCEPT_LANGUAGE": draw(header_value),
    }
    if draw(st.integers(0, 4)):
        headers["HTTP_X_CSRFTOKEN"] = CSRF_SECRET
    if draw(st.booleans()):
        return method, {"form": draw(form)}, headers
    return method, {"body": draw(raw_body), "content_type": draw(content_type)}, headers


def send(client, method: str, path: str, payload: dict, headers: dict):
    if "form" in payload:
        if method in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return client.generic(method, path + "?" + _query(payload["form"]), **headers)
        if method == "POST":
            return client.post(path, payload["form"], **headers)
        return client.generic(
            method, path, _query(payload["form"]).encode(), "application/x-www-form-urlencoded", **headers
        )
    return client.generic(method, path, payload["body"], payload["content_type"], **headers)


def _query(fields: dict) -> str:
    pairs = []
    for key, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote(key, safe='')}={quote(one, safe='')}")
    return "&".join(pairs)


SUBSCRIBER = Subscriber._meta.label
TOPICS = Subscriber.topics.through._meta.label
OUTBOX = OutgoingEmail._meta.label
ERASED = {
    SUBSCRIBER,
    TOPICS,
    SuppressionEvent._meta.label,
    DeletionRecord._meta.label,
    Feedback._meta.label,
    "digest.Delivery",
    OUTBOX,
}
NOTHING: frozenset[str] = frozenset()


def check(response, before, *, may_change=NOTHING, owner: int | None = None):
    """No 500; only the tables in `may_change` changed, and of the subscribers only `owner`."""
    assert response.status_code < 500, response.content[:500]
    after = snapshot()
    unexpected = set(changed(before, after)) - set(may_change)
    assert not unexpected, f"{response.status_code} but changed {sorted(unexpected)}"
    if owner is not None:
        others = changed_rows(before, after, SUBSCRIBER) - {owner}
        assert not others, f"changed subscribers {others}, not only the link's owner {owner}"
    return after


MANAGE_ACTIONS = {
    # action: (status of success, what it may change)
    "save": (302, {SUBSCRIBER, TOPICS}),
    "pause": (302, {SUBSCRIBER}),
    "resume": (302, {SUBSCRIBER}),
    "unsubscribe": (200, {SUBSCRIBER}),
    "data_link": (302, {OUTBOX, "mail"}),
    "data_export": (302, {OUTBOX, "mail"}),
}


def manage_may_change(fields: dict, status: int) -> frozenset[str]:
    action = fields.get("action")
    if isinstance(action, list):  # a repeated field: Django reads its last value
        action = action[-1] if action else None
    if not isinstance(action, str) or action not in MANAGE_ACTIONS:
        return NOTHING
    success, tables = MANAGE_ACTIONS[action]
    return frozenset(tables) if status == success else NOTHING


def link_may_change(name: str, method: str, status: int) -> frozenset[str]:
    """What a request to a genuine link may change: only a successful POST acts (mail
    scanners open links), and each page only what it is for."""
    if method != "POST":
        return NOTHING
    allowed = {
        "confirm": ({200}, {SUBSCRIBER}),
        # save, pause, resume: 302; unsubscribe: 200; data link or export mailed: 302.
        "manage": ({200, 302}, {SUBSCRIBER, TOPICS, OUTBOX, "mail"}),
        "data": ({200}, ERASED),
        "export": (set(), set()),
        "unsubscribe": ({200}, {SUBSCRIBER}),
        "resubscribe": ({200}, {SUBSCRIBER}),
        "feedback-up": ({200}, {Feedback._meta.label}),
        "feedback-down": ({200}, {Feedback._meta.label}),
    }
    statuses, tables = allowed[name]
    return frozenset(tables) if status in statuses else NOTHING


@pytest.fixture
def people(db):
    paper = make_paper(1, topics={"reasoning": 0.9})
    active = SubscriberFactory(
        email="active@example.org", status=Subscriber.Status.ACTIVE, topics=["reasoning"]
    )
    pending = SubscriberFactory(
        email="pending@example.org", status=Subscriber.Status.PENDING, topics=["agents"]
    )
    gone = SubscriberFactory(
        email="gone@example.org", status=Subscriber.Status.UNSUBSCRIBED, topics=["agents"]
    )
    Delivery.objects.create(subscriber=active, edition="2026-11-20", status=Delivery.Status.SENT)
    return {"active": active, "pending": pending, "gone": gone, "paper": paper}


def valid_links(people) -> dict[str, str]:
    active, pending, gone, paper = people["active"], people["pending"], people["gone"], people["paper"]
    feedback = make_feedback_token(active.pk, paper.pk, active.token_version)
    data = make_data_token(active.pk, active.token_version)
    return {
        "confirm": f"/confirm/{make_confirm_token(pending)}/",
        "manage": f"/manage/{make_manage_token(active.pk, active.token_version)}/",
        "data": f"/data/{data}/",
        "export": f"/data/{data}/export.json",
        "unsubscribe": f"/unsubscribe/{make_unsubscribe_token(active.pk, active.token_version)}/",
        "resubscribe": f"/resubscribe/{make_unsubscribe_token(gone.pk, gone.token_version)}/",
        "feedback-up": f"/feedback/{feedback}/up/",
        "feedback-down": f"/feedback/{feedback}/down/",
    }


LINK_OWNER = {
    "confirm": lambda people: people["pending"],
    "resubscribe": lambda people: people["gone"],
    **{
        name: (lambda people: people["active"])
        for name in ("manage", "data", "export", "unsubscribe", "feedback-up", "feedback-down")
    },
}


def forged_tokens(people) -> st.SearchStrategy:
    """Tokens that must be refused: random, tampered, cut, for another purpose, for
    another person, from before a token rotation, or for someone deleted."""
    active, pending = people["active"], people["pending"]
    genuine = [
        make_confirm_token(pending),
        make_manage_token(active.pk, active.token_version),
        make_unsubscribe_token(active.pk, active.token_version),
        make_data_token(active.pk, active.token_version),
        make_feedback_token(active.pk, people["paper"].pk, active.token_version),
    ]
    stale = [
        make_manage_token(active.pk, active.token_version - 1),
        make_data_token(active.pk, active.token_version - 1),
        make_unsubscribe_token(active.pk, active.token_version + 1),
        make_manage_token(10**9, 0),
        make_unsubscribe_token(10**9, 0),
        make_feedback_token(10**9, people["paper"].pk, 0),
        make_feedback_token(active.pk, 10**9, active.token_version),
    ]

    def tamper(token: str, position: int, char: str) -> str:
        position %= len(token)
        return token[:position] + char + token[position + 1 :] if token[position] != char else token + char

    return st.one_of(
        junk_text.filter(lambda text: text.strip(" /") != ""),
        st.sampled_from(stale),
        st.builds(tamper, st.sampled_from(genuine), st.integers(0, 200), st.sampled_from("Aa0._-:~é")),
        st.builds(
            lambda token, cut: token[: max(1, cut % len(token))],
            st.sampled_from(genuine),
            st.integers(1, 200),
        ),
        st.builds(lambda token, junk: token + junk, st.sampled_from(genuine), junk_text.filter(bool)),
    )


WRONG_PURPOSE = {
    "confirm": ["manage", "unsubscribe", "data"],
    "manage": ["confirm", "unsubscribe", "data"],
    "unsubscribe": ["confirm", "manage", "data"],
    "data": ["confirm", "manage", "unsubscribe"],
}


@FUZZ
@given(data=st.data())
def test_signup_never_fails_and_only_a_valid_form_signs_up(
    csrf_client, people, settings, rolled_back, django_capture_on_commit_callbacks, data
):
    settings.SIGNUP_RATE_LIMIT = ""
    method, payload, headers = data.draw(requests_())
    with rolled_back():
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=True):
            response = send(csrf_client, method, "/", payload, headers)
        signed_up = method == "POST" and response.status_code == 302
        after = check(
            response, before, may_change={SUBSCRIBER, TOPICS, OUTBOX, "mail"} if signed_up else NOTHING
        )
        if "HTTP_X_CSRFTOKEN" not in headers and method == "POST":
            assert response.status_code in (400, 403)  # refused: no token, or a body too big to read
        new = [row for row in after["subscribers.Subscriber"] if row not in before["subscribers.Subscriber"]]
        assert len(new) <= 1 and len(after["mail"]) - len(before["mail"]) <= 1
        for row in new:
            assert (
                "\r" not in row["email"]
                and "\n" not in row["email"]
                and "\x00" not in row["signup_user_agent"]
            )
        for to, _subject in after["mail"][len(before["mail"]) :]:
            assert len(to) == 1 and "\n" not in to[0] and "\r" not in to[0]


@FUZZ
@given(data=st.data())
def test_forged_and_stale_tokens_are_refused_and_change_nothing(
    csrf_client, people, rolled_back, django_capture_on_commit_callbacks, data
):
    token = data.draw(forged_tokens(people))
    route = data.draw(
        st.sampled_from(
            [
                "/confirm/{}/",
                "/manage/{}/",
                "/data/{}/",
                "/data/{}/export.json",
                "/unsubscribe/{}/",
                "/resubscribe/{}/",
                "/feedback/{}/up/",
                "/feedback/{}/down/",
                "/feedback/{}/sideways/",
                "/digest/{}/",
                "/feed/{}/",
            ]
        )
    )
    method, payload, headers = data.draw(requests_())
    with rolled_back():
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=True):
            response = send(csrf_client, method, route.format(quote(token, safe="")), payload, headers)
        check(response, before)
        assert response.status_code >= 400


@FUZZ
@given(data=st.data())
def test_tokens_used_on_the_wrong_page_are_refused(csrf_client, people, rolled_back, data):
    links = valid_links(people)
    page = data.draw(st.sampled_from(sorted(WRONG_PURPOSE)))
    other = data.draw(st.sampled_from(WRONG_PURPOSE[page]))
    token = links[other].split("/")[2]
    method = data.draw(st.sampled_from(["GET", "POST"]))
    with rolled_back():
        before = snapshot()
        response = csrf_client.generic(method, f"/{page}/{token}/", HTTP_X_CSRFTOKEN=CSRF_SECRET)
        check(response, before)
        assert response.status_code == 400


@FUZZ
@given(data=st.data())
def test_genuine_links_survive_any_request_and_gets_never_act(
    csrf_client, people, rolled_back, django_capture_on_commit_callbacks, data
):
    name = data.draw(st.sampled_from(sorted(valid_links(people))))
    method, payload, headers = data.draw(requests_())
    with rolled_back():
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=True):
            response = send(csrf_client, method, valid_links(people)[name], payload, headers)
        check(
            response,
            before,
            may_change=(
                manage_may_change(payload["form"], response.status_code)
                if name == "manage" and "form" in payload and method == "POST"
                else link_may_change(name, method, response.status_code)
            ),
            owner=LINK_OWNER[name](people).pk,
        )
        # Only the RFC 8058 one-click endpoint takes a POST without a CSRF token.
        if method == "POST" and "HTTP_X_CSRFTOKEN" not in headers and name != "unsubscribe":
            assert response.status_code in (400, 403)  # refused: no token, or a body too big to read


@FUZZ
@given(
    credentials=st.one_of(st.none(), st.just(WEBHOOK_SECRET), junk_text),
    method=st.sampled_from(METHODS),
    body=st.one_of(
        raw_body,
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), junk_text),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(junk_text, inner, max_size=4),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {
                "RecordType": st.sampled_from(["Bounce", "SpamComplaint", "Delivery", "Open", 7, None]),
                "Email": st.one_of(st.just("active@example.org"), junk_text, st.integers()),
                "Type": st.sampled_from(["HardBounce", "SoftBounce", "Nope", 1]),
                "ID": st.one_of(st.integers(), junk_text, st.none()),
            }
        ).map(lambda value: json.dumps(value).encode()),
    ),
    ctype=content_type,
)
def test_webhook_refuses_strangers_and_unreadable_payloads(
    csrf_client, people, settings, rolled_back, credentials, method, body, ctype
):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    settings.ESP_TRACKING_WEBHOOK = "postmark"
    headers = {}
    if credentials is not None:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    with rolled_back():
        before = snapshot()
        response = csrf_client.generic(method, WEBHOOK, body, ctype, **headers)
        genuine = credentials == WEBHOOK_SECRET and method == "POST"
        suppression = {SUBSCRIBER, SuppressionEvent._meta.label}
        check(
            response, before, may_change=suppression if genuine and response.status_code == 200 else NOTHING
        )
        # anymail answers HEAD (ESPs use it to verify the URL) and Django answers OPTIONS; neither acts.
        if not genuine and method not in ("HEAD", "OPTIONS"):
            assert response.status_code >= 400


VALID_SIGNUP = {
    "email": "new@example.org",
    "topics": ["reasoning"],
    "interests": "",
    "frequency": "daily",
    "weekday": "0",
}
VALID_PREFERENCES = {
    "action": "save",
    "topics": ["agents"],
    "interests": "",
    "frequency": "weekly",
    "weekday": "3",
    "digest_size": "5",
}


@st.composite
def near_valid(draw, base: dict):
    """A valid form with one or two fields swapped for hostile values: where bugs hide."""
    fields = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=2, unique=True)):
        fields[name] = draw(field_value)
    return fields


def claimed_addresses(header: str) -> set:
    found = set()
    for part in header.split(","):
        try:
            found.add(ipaddress.ip_address(part.strip().strip("[]")))
        except ValueError:
            continue
    return found


@FUZZ
@given(fields=near_valid(VALID_SIGNUP), agent=header_value, forwarded=header_value)
def test_nearly_valid_signups_are_stored_clean_or_refused(
    csrf_client, people, settings, rolled_back, django_capture_on_commit_callbacks, fields, agent, forwarded
):
    settings.SIGNUP_RATE_LIMIT = "1000/h"
    settings.TRUSTED_PROXY_COUNT = 1
    with rolled_back():
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=True):
            response = csrf_client.post(
                "/",
                fields,
                HTTP_USER_AGENT=agent,
                HTTP_X_FORWARDED_FOR=forwarded,
                HTTP_X_CSRFTOKEN=CSRF_SECRET,
            )
        signed_up = response.status_code == 302
        after = check(
            response, before, may_change={SUBSCRIBER, TOPICS, OUTBOX, "mail"} if signed_up else NOTHING
        )
        if response.status_code == 302 and changed(before, after):
            (row,) = [r for r in after["subscribers.Subscriber"] if r not in before["subscribers.Subscriber"]]
            assert row["status"] == Subscriber.Status.PENDING
            assert not any(char in row["email"] for char in '\r\n\x00<>" ')
            # Consent evidence: what the proxy established, never a string the client made up.
            if row["signup_ip"] is not None:
                assert ipaddress.ip_address(row["signup_ip"]) in claimed_addresses(forwarded)
            (to, _subject) = after["mail"][-1]
            assert to == [row["email"]]


@FUZZ
@given(fields=near_valid(VALID_PREFERENCES))
def test_nearly_valid_preference_changes_are_saved_clean_or_refused(csrf_client, people, rolled_back, fields):
    path = valid_links(people)["manage"]
    with rolled_back():
        before = snapshot()
        response = csrf_client.post(path, fields, HTTP_X_CSRFTOKEN=CSRF_SECRET)
        check(
            response,
            before,
            may_change=manage_may_change(fields, response.status_code),
            owner=people["active"].pk,
        )
        if response.status_code == 400:
            assert b"Nothing was changed" in response.content or b'role="alert"' in response.content


@pytest.mark.parametrize("agent", HOSTILE_STRINGS)
def test_any_user_agent_is_stored_safely_with_a_genuine_signup(
    client, people, settings, django_capture_on_commit_callbacks, agent
):
    settings.SIGNUP_RATE_LIMIT = ""
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/", VALID_SIGNUP, HTTP_USER_AGENT=agent, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302
    stored = Subscriber.objects.get(email="new@example.org").signup_user_agent
    assert "\x00" not in stored and len(stored) <= 512


@pytest.mark.parametrize(
    "path", ["/", "/confirm/x/", "/manage/x/", "/data/x/", "/unsubscribe/x/", "/feedback/x/up/", WEBHOOK]
)
def test_huge_bodies_are_refused_without_a_trace(csrf_client, people, settings, path):
    settings.SIGNUP_RATE_LIMIT = ""
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    settings.ESP_TRACKING_WEBHOOK = "postmark"
    before = snapshot()
    huge = {**VALID_SIGNUP, "interests": "protein folding " * 200_000}
    response = csrf_client.post(path, huge, HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert 400 <= response.status_code < 500
    assert not changed(before, snapshot())


# --- Replays: a link used again does nothing more ----------------------------------------


def test_replayed_confirmation_changes_nothing_and_opens_nothing(csrf_client, people):
    path = valid_links(people)["confirm"]
    assert csrf_client.post(path, HTTP_X_CSRFTOKEN=CSRF_SECRET).status_code == 200
    before = snapshot()
    for again in (csrf_client.post(path, HTTP_X_CSRFTOKEN=CSRF_SECRET), csrf_client.get(path)):
        assert again.status_code == 200 and b"already confirmed" in again.content
        # A used link may sit in a forwarded or archived mail: no way into the preferences.
        assert b"/manage/" not in again.content and b"/data/" not in again.content
    assert not changed(before, snapshot())


def test_replayed_unsubscribe_changes_nothing(client, people):
    path = valid_links(people)["unsubscribe"]
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    before = snapshot()
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert client.post(path, "junk", content_type="text/plain").status_code == 200
    assert not changed(before, snapshot())


def test_replayed_feedback_vote_keeps_one_vote(csrf_client, people):
    path = valid_links(people)["feedback-up"]
    assert csrf_client.post(path, HTTP_X_CSRFTOKEN=CSRF_SECRET).status_code == 200
    before = snapshot()
    assert csrf_client.post(path, HTTP_X_CSRFTOKEN=CSRF_SECRET).status_code == 200
    after = snapshot()
    assert [(r["subscriber_id"], r["paper_id"], r["vote"]) for r in after["digest.Feedback"]] == [
        (r["subscriber_id"], r["paper_id"], r["vote"]) for r in before["digest.Feedback"]
    ]


def test_links_from_before_a_deletion_are_dead(csrf_client, people):
    links = valid_links(people)
    deleted = csrf_client.post(
        links["data"], {"action": "delete", "confirm": "on"}, HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    assert deleted.status_code == 200
    before = snapshot()
    for name in ("manage", "data", "export", "unsubscribe", "feedback-up"):
        assert csrf_client.get(links[name]).status_code == 400, name
        assert csrf_client.post(links[name], HTTP_X_CSRFTOKEN=CSRF_SECRET).status_code in (400, 405), name
    assert not changed(before, snapshot())
