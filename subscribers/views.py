"""Public pages: signup, confirmation, preference centre, unsubscribe.

Links from emails are opened by mail scanners, so every GET only shows a page;
changes happen on POST. Bad links get a friendly 400 page, never a 500.
"""

import json
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from digest.signed_links import feed_url
from subscribers import services
from subscribers.clientip import client_ip
from subscribers.forms import DeleteForm, ManageForm, SignupForm
from subscribers.links import email_links
from subscribers.models import Subscriber
from subscribers.ratelimits import signup_limited
from subscribers.selectors import subscriber_from_token
from subscribers.tokens import InvalidToken, make_unsubscribe_token

Status = Subscriber.Status


def _user_agent(request: HttpRequest) -> str:
    # Kept as consent evidence. Control characters never belong in a user agent,
    # and PostgreSQL refuses a NUL outright, which turned such a signup into a 500.
    value = request.META.get("HTTP_USER_AGENT", "")
    return "".join(char for char in value if char >= " " and char != "\x7f")


def _private(response: HttpResponse) -> HttpResponse:
    # Pages behind a personal link must stay out of search engines and caches.
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    """A page behind a personal link."""
    return _private(render(request, template, context, status=status))


def bad_link(request: HttpRequest, *, reason: str = "") -> HttpResponse:
    return _page(request, "subscribers/bad_link.html", {"reason": reason}, status=400)


PersonalView = Callable[[HttpRequest, Subscriber, str], HttpResponse]
LinkView = Callable[[HttpRequest, str], HttpResponse]


def _personal_link(
    purpose: str, *, methods: Sequence[str] = ("GET", "HEAD", "POST")
) -> Callable[[PersonalView], LinkView]:
    """A view behind a signed link: never cached, only ``methods`` allowed, and called with the
    subscriber the token belongs to; a bad, expired or revoked token gets the friendly 400 page."""

    def decorate(view: PersonalView) -> LinkView:
        @wraps(view)
        def read_token(request: HttpRequest, token: str) -> HttpResponse:
            try:
                subscriber = subscriber_from_token(token=token, purpose=purpose)
            except InvalidToken:
                return bad_link(request, reason=purpose)
            return view(request, subscriber, token)

        return never_cache(require_http_methods(list(methods))(read_token))

    return decorate


def _unsubscribe_token(subscriber: Subscriber) -> str:
    return make_unsubscribe_token(subscriber.pk, subscriber.token_version)


# --- Signup ----------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "subscribers/signup.html", {"form": SignupForm()})
    if signup_limited(request):
        response = render(request, "subscribers/rate_limited.html", status=429)
        response["Retry-After"] = "3600"
        return response
    form = SignupForm(request.POST)
    if form.is_bot:
        # Same answer as a real signup, so bots learn nothing.
        return redirect("subscribers:signup_done")
    if not form.is_valid():
        return render(request, "subscribers/signup.html", {"form": form}, status=400)
    # Stored as submitted and applied by the outbox worker: the same work, the
    # same time and the same page whether the address is new, pending, active,
    # unsubscribed or suppressed.
    services.subscriber_signup_request(
        email=form.cleaned_data["email"],
        **form.preferences(),
        ip=client_ip(request),
        user_agent=_user_agent(request),
    )
    return redirect("subscribers:signup_done")


@require_GET
def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "subscribers/signup_done.html")


# --- Double opt-in ---------------------------------------------------------------------


@_personal_link("confirm")
def confirm(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    if subscriber.status in (Status.UNSUBSCRIBED, Status.SUPPRESSED):
        return bad_link(request, reason="used")
    context = {"subscriber": subscriber}
    if subscriber.status != Status.PENDING:
        # A replayed link: already confirmed, nothing to do. A used link is no
        # key to the preference centre: it may sit in a forwarded or archived mail.
        return _page(request, "subscribers/confirm.html", {**context, "already": True})
    if request.method == "POST":
        confirmed = services.subscriber_confirm(
            subscriber=subscriber, ip=client_ip(request), user_agent=_user_agent(request)
        )
        if not confirmed:  # another request confirmed it a moment ago
            return _page(request, "subscribers/confirm.html", {**context, "already": True})
        links = email_links(subscriber_id=subscriber.pk, token_version=subscriber.token_version)
        return _page(request, "subscribers/confirmed.html", {**context, **links})
    return _page(request, "subscribers/confirm.html", context)


# --- Preference centre -------------------------------------------------------------


def _manage_page(
    request: HttpRequest,
    subscriber: Subscriber,
    token: str,
    *,
    form: ManageForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "subscriber": subscriber,
        "token": token,
        "form": form or ManageForm.for_subscriber(subscriber),
        "unsubscribe_token": _unsubscribe_token(subscriber),
        "feed_url": feed_url(subscriber_id=subscriber.pk, token_version=subscriber.token_version),
    }
    return _page(request, "subscribers/manage.html", context, status=status)


class _ManageAction(NamedTuple):
    """A preference-centre button that changes one thing and comes back to the page."""

    service: Callable[..., bool | None]
    done: str
    # Said when the service answers False: the change did not apply to this reader.
    not_applied: str = ""


_MANAGE_ACTIONS = {
    "pause": _ManageAction(
        services.subscriber_pause,
        "Your digest is paused. Resume it here whenever you like.",
        "Only an active digest can be paused.",
    ),
    "resume": _ManageAction(
        services.subscriber_resume,
        "Welcome back: your digest is on again.",
        "Only a paused digest can be resumed.",
    ),
    "data_link": _ManageAction(
        services.subscriber_request_data_link,
        "We emailed you a link to download or delete your data. It works for one hour.",
    ),
    "data_export": _ManageAction(
        services.subscriber_request_data_export, "We emailed you your data as a JSON file."
    ),
}


@_personal_link("manage")
def manage(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    if request.method != "POST":
        return _manage_page(request, subscriber, token)

    action = request.POST.get("action", "")
    here = reverse("subscribers:manage", args=[token])
    if action == "save":
        form = ManageForm(request.POST)
        if not form.is_valid():
            return _manage_page(request, subscriber, token, form=form, status=400)
        services.subscriber_update_preferences(subscriber=subscriber, **form.preferences())
        messages.success(request, "Your preferences are saved.")
        return redirect(here)
    if action in _MANAGE_ACTIONS:
        service, done, not_applied = _MANAGE_ACTIONS[action]
        if service(subscriber=subscriber) is False:
            messages.info(request, not_applied)
        else:
            messages.success(request, done)
        return redirect(here)
    if action == "unsubscribe":
        services.subscriber_unsubscribe(subscriber=subscriber, reason="preference centre")
        context = {"subscriber": subscriber, "unsubscribe_token": _unsubscribe_token(subscriber)}
        return _page(request, "subscribers/unsubscribed.html", context)
    messages.error(request, "That action is not available. Nothing was changed.")
    return _manage_page(request, subscriber, token, status=400)


# --- Data rights: download and delete, behind a fresh one-hour link ----------------


@_personal_link("data")
def data(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    delete_form = DeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if request.POST.get("action") != "delete" or not delete_form.is_valid():
            context = {"subscriber": subscriber, "token": token, "delete_form": delete_form}
            return _page(request, "subscribers/data.html", context, status=400)
        services.subscriber_delete(subscriber=subscriber)
        return _page(request, "subscribers/deleted.html")
    context = {"subscriber": subscriber, "token": token, "delete_form": DeleteForm()}
    return _page(request, "subscribers/data.html", context)


@_personal_link("data", methods=["GET"])
def export(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    body = json.dumps(services.subscriber_export(subscriber=subscriber), cls=DjangoJSONEncoder, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{settings.PRODUCT_NAME.lower()}-my-data.json"'
    return _private(response)


# --- Unsubscribe ---------------------------------------------------------------------


def _one_click(request: HttpRequest) -> bool:
    try:
        return request.POST.get("List-Unsubscribe") == "One-Click"
    except Exception:  # a malformed body still unsubscribes
        return False


@csrf_exempt  # RFC 8058: mail providers POST without cookies or a CSRF token
@_personal_link("unsubscribe")
def unsubscribe(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    # The unsubscribe link sits in every List-Unsubscribe header, where forwarded
    # mails, scanners and archives see it: it unsubscribes and resubscribes, nothing more.
    context = {"subscriber": subscriber, "unsubscribe_token": token}
    if request.method == "POST":
        reason = "one-click" if _one_click(request) else "unsubscribe page"
        services.subscriber_unsubscribe(subscriber=subscriber, reason=reason)
        # 200 with a page, never a redirect: one-click clients do not follow them.
        return _page(request, "subscribers/unsubscribed.html", context)
    return _page(request, "subscribers/unsubscribe.html", context)


@_personal_link("unsubscribe")
def resubscribe(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    context = {"subscriber": subscriber, "unsubscribe_token": token}
    if request.method == "POST" and subscriber.status == Status.UNSUBSCRIBED:
        services.subscriber_resubscribe(
            subscriber=subscriber, ip=client_ip(request), user_agent=_user_agent(request)
        )
        return _page(request, "subscribers/resubscribe.html", {**context, "done": True})
    return _page(request, "subscribers/resubscribe.html", context)
