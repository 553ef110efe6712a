"""Every view that accepts a POST refuses one without a CSRF token, except the two
kinds that must: the RFC 8058 one-click unsubscribe (mail providers post without
cookies) and the ESP webhooks (authenticated by ANYMAIL_WEBHOOK_SECRET).

The URL conf is walked, so a view added later, or one that loses its protection
(say, a `@csrf_exempt` on the preference centre), fails here. Django's test client
skips CSRF checks unless asked, which is how such a change once left every test green.
"""

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.regex_helper import normalize

pytestmark = pytest.mark.django_db

ALLOWED_WITHOUT_TOKEN = {"subscribers:unsubscribe"}
WEBHOOK_NAMESPACE = "anymail"


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern.regex.pattern), inner)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern.regex.pattern), f"{namespace}:{entry.name}".strip(":"), entry


def _sample_path(regex: str) -> str:
    """One concrete path for a URL regex, every parameter filled with a plausible value."""
    joined = "".join(part.lstrip("^").rstrip("$").replace("\\Z", "") for part in regex.split("^") if part)
    template, params = normalize(joined)[0]
    values = dict.fromkeys(params, "1")
    return "/" + (template % values)


def routes():
    seen = set()
    for regex, name, _entry in _walk(get_resolver().url_patterns):
        path = _sample_path(regex)
        if path not in seen:
            seen.add(path)
            yield pytest.param(path, name, id=f"{name or 'unnamed'} {path}")


@pytest.mark.parametrize(("path", "name"), list(routes()))
def test_every_post_without_a_csrf_token_is_refused(path, name, settings):
    settings.ESP_TRACKING_WEBHOOK = "postmark"
    client = Client(enforce_csrf_checks=True)
    response = client.post(path, {"field": "value"})
    exempt = name in ALLOWED_WITHOUT_TOKEN or name.startswith(f"{WEBHOOK_NAMESPACE}:")
    if exempt:
        assert response.status_code != 403 or b"CSRF" not in response.content, (path, response.status_code)
    else:
        assert response.status_code == 403, f"{name} {path} took a POST without a CSRF token"


def test_the_walk_covers_the_public_and_admin_forms():
    names = {name for _regex, name, _entry in _walk(get_resolver().url_patterns)}
    assert {
        "subscribers:signup",
        "subscribers:confirm",
        "subscribers:manage",
        "subscribers:data",
        "subscribers:resubscribe",
        "subscribers:unsubscribe",
        "digest:feedback",
        "admin:digest_digestrun_preview",
        "admin:digest_digestrun_start",
        "admin:login",
    } <= names


def test_one_click_unsubscribe_works_without_a_token(client):
    from subscribers.models import Subscriber
    from subscribers.tokens import make_unsubscribe_token
    from tests.subscribers.factories import SubscriberFactory

    reader = SubscriberFactory(status=Subscriber.Status.ACTIVE)
    token = make_unsubscribe_token(reader.pk, reader.token_version)
    response = Client(enforce_csrf_checks=True).post(
        f"/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
