"""Public pages: signup, confirmation, preference centre, unsubscribe.

Links from emails are opened by mail scanners, so every GET only shows a page;
changes happen on POST. Bad links get a friendly 400 page, never a 500.
"""

import ipaddress
import json

from django.conf import settings
from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.decorators import ratelimit

from subscribers import services
from subscribers.forms import DeleteForm, ManageForm, SignupForm
from subscribers.models import Subscriber
from subscribers.selectors import subscriber_from_token
from subscribers.tokens import InvalidToken

Status = Subscriber.Status


def _client_ip(request: HttpRequest) -> str | None:
    # The same source of the client address as the rate limit uses.
    key = getattr(settings, "RATELIMIT_IP_META_KEY", None) or "REMOTE_ADDR"
    value = request.META.get(key, "").split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _user_agent(request: HttpRequest) -> str:
    # Kept as consent evidence. Control characters never belong in a user agent,
    # and PostgreSQL refuses a NUL outright, which turned such a signup into a 500.
    value = request.META.get("HTTP_USER_AGENT", "")
    return "".join(char for char in value if char >= " " and char != "\x7f")


def _private(response: HttpResponse) -> HttpResponse:
    # Pages behind a personal link must stay out of search engines and caches.
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def bad_link(request: HttpRequest, *, reason: str = "") -> HttpResponse:
    return _private(render(request, "subscribers/bad_link.html", {"reason": reason}, status=400))


def _links(subscriber: Subscriber) -> dict:
    return services.email_links(subscriber_id=subscriber.pk, token_version=subscriber.token_version)


def _unsubscribe_token(subscriber: Subscriber) -> str:
    from subscribers.tokens import make_unsubscribe_token

    return make_unsubscribe_token(subscriber.pk, subscriber.token_version)


# --- Signup ----------------------------------------------------------------------------


def signup_rate(group, request) -> str | None:
    """The per-IP signup limit from settings; empty turns the limit off."""
    return settings.SIGNUP_RATE_LIMIT or None


@require_http_methods(["GET", "HEAD", "POST"])
@ratelimit(key="ip", rate=signup_rate, method="POST", block=False)
def signup(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "subscribers/signup.html", {"form": SignupForm()})
    if getattr(request, "limited", False):
        response = render(request, "subscribers/rate_limited.html", status=429)
        response["Retry-After"] = "3600"
        return response
    form = SignupForm(request.POST)
    if form.is_bot:
        # Same answer as a real signup, so bots learn nothing.
        return redirect("subscribers:signup_done")
    if not form.is_valid():
        return render(request, "subscribers/signup.html", {"form": form}, status=400)
    data = form.cleaned_data
    services.subscriber_signup(
        email=data["email"],
        topics=data["topics"],
        interests=data["interests"],
        frequency=data["frequency"],
        weekday=data["weekday"],
        arxiv_categories=data["arxiv_categories"],
        followed_authors=data["followed_authors"],
        ip=_client_ip(request),
        user_agent=_user_agent(request),
    )
    # The same page whether the address was new, pending, active or suppressed.
    return redirect("subscribers:signup_done")


@require_GET
def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "subscribers/signup_done.html")


# --- Double opt-in ---------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="confirm")
    except InvalidToken:
        return bad_link(request, reason="confirm")
    if subscriber.status in (Status.UNSUBSCRIBED, Status.SUPPRESSED):
        return bad_link(request, reason="used")
    context = {"subscriber": subscriber, **_links(subscriber)}
    if subscriber.status != Status.PENDING:
        # A replayed link: already confirmed, nothing to do.
        return _private(render(request, "subscribers/confirm.html", {**context, "already": True}))
    if request.method == "POST":
        services.subscriber_confirm(
            subscriber=subscriber, ip=_client_ip(request), user_agent=_user_agent(request)
        )
        return _private(render(request, "subscribers/confirmed.html", context))
    return _private(render(request, "subscribers/confirm.html", context))


# --- Preference centre -------------------------------------------------------------


def _manage_page(request, subscriber, token, *, form=None, delete_form=None, status=200) -> HttpResponse:
    context = {
        "subscriber": subscriber,
        "token": token,
        "form": form or ManageForm.for_subscriber(subscriber),
        "delete_form": delete_form or DeleteForm(),
        "unsubscribe_token": _unsubscribe_token(subscriber),
    }
    return _private(render(request, "subscribers/manage.html", context, status=status))


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def manage(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="manage")
    except InvalidToken:
        return bad_link(request, reason="manage")
    if request.method != "POST":
        return _manage_page(request, subscriber, token)

    action = request.POST.get("action", "")
    here = reverse("subscribers:manage", args=[token])
    if action == "save":
        form = ManageForm(request.POST)
        if not form.is_valid():
            return _manage_page(request, subscriber, token, form=form, status=400)
        data = form.cleaned_data
        services.subscriber_update_preferences(
            subscriber=subscriber,
            topics=data["topics"],
            interests=data["interests"],
            frequency=data["frequency"],
            weekday=data["weekday"],
            digest_size=data["digest_size"],
            arxiv_categories=data["arxiv_categories"],
            followed_authors=data["followed_authors"],
        )
        messages.success(request, "Your preferences are saved.")
        return redirect(here)
    if action == "pause":
        if services.subscriber_pause(subscriber=subscriber):
            messages.success(request, "Your digest is paused. Resume it here whenever you like.")
        else:
            messages.info(request, "Only an active digest can be paused.")
        return redirect(here)
    if action == "resume":
        if services.subscriber_resume(subscriber=subscriber):
            messages.success(request, "Welcome back: your digest is on again.")
        else:
            messages.info(request, "Only a paused digest can be resumed.")
        return redirect(here)
    if action == "unsubscribe":
        services.subscriber_unsubscribe(subscriber=subscriber, reason="preference centre")
        return _private(
            render(
                request,
                "subscribers/unsubscribed.html",
                {
                    "subscriber": subscriber,
                    "unsubscribe_token": _unsubscribe_token(subscriber),
                    **_links(subscriber),
                },
            )
        )
    if action == "delete":
        delete_form = DeleteForm(request.POST)
        if not delete_form.is_valid():
            return _manage_page(request, subscriber, token, delete_form=delete_form, status=400)
        services.subscriber_delete(subscriber=subscriber)
        return _private(render(request, "subscribers/deleted.html"))
    messages.error(request, "That action is not available. Nothing was changed.")
    return _manage_page(request, subscriber, token, status=400)


@never_cache
@require_GET
def export(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="manage")
    except InvalidToken:
        return bad_link(request, reason="manage")
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
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="unsubscribe")
    except InvalidToken:
        return bad_link(request, reason="unsubscribe")
    context = {"subscriber": subscriber, "unsubscribe_token": token, **_links(subscriber)}
    if request.method == "POST":
        reason = "one-click" if _one_click(request) else "unsubscribe page"
        services.subscriber_unsubscribe(subscriber=subscriber, reason=reason)
        # 200 with a page, never a redirect: one-click clients do not follow them.
        return _private(render(request, "subscribers/unsubscribed.html", context))
    return _private(render(request, "subscribers/unsubscribe.html", context))


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def resubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="unsubscribe")
    except InvalidToken:
        return bad_link(request, reason="unsubscribe")
    context = {"subscriber": subscriber, "unsubscribe_token": token, **_links(subscriber)}
    if request.method == "POST" and subscriber.status == Status.UNSUBSCRIBED:
        services.subscriber_resubscribe(
            subscriber=subscriber, ip=_client_ip(request), user_agent=_user_agent(request)
        )
        return _private(render(request, "subscribers/resubscribe.html", {**context, "done": True}))
    return _private(render(request, "subscribers/resubscribe.html", context))
