"""Public pages: signup, confirmation, preference centre, unsubscribe.

Links from emails are opened by mail scanners, so every GET only shows a page;
changes happen on POST. Bad links get a friendly 400 page, never a 500.
"""

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


def bad_link(request: HttpRequest, *, reason: str = "") -> HttpResponse:
    return _private(render(request, "subscribers/bad_link.html", {"reason": reason}, status=400))


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
    data = form.cleaned_data
    # Stored as submitted and applied by the outbox worker: the same work, the
    # same time and the same page whether the address is new, pending, active,
    # unsubscribed or suppressed.
    services.subscriber_signup_request(
        email=data["email"],
        topics=data["topics"],
        interests=data["interests"],
        liked_papers=data["liked_papers"],
        frequency=data["frequency"],
        weekday=data["weekday"],
        arxiv_categories=data["arxiv_categories"],
        followed_authors=data["followed_authors"],
        ip=client_ip(request),
        user_agent=_user_agent(request),
    )
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
    context = {"subscriber": subscriber}
    if subscriber.status != Status.PENDING:
        # A replayed link: already confirmed, nothing to do. A used link is no
        # key to the preference centre: it may sit in a forwarded or archived mail.
        return _private(render(request, "subscribers/confirm.html", {**context, "already": True}))
    if request.method == "POST":
        confirmed = services.subscriber_confirm(
            subscriber=subscriber, ip=client_ip(request), user_agent=_user_agent(request)
        )
        if not confirmed:  # another request confirmed it a moment ago
            return _private(render(request, "subscribers/confirm.html", {**context, "already": True}))
        links = email_links(subscriber_id=subscriber.pk, token_version=subscriber.token_version)
        return _private(render(request, "subscribers/confirmed.html", {**context, **links}))
    return _private(render(request, "subscribers/confirm.html", context))


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
            liked_papers=data["liked_papers"],
            show_trending=data["show_trending"],
            with_abstracts=data["with_abstracts"],
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
        context = {"subscriber": subscriber, "unsubscribe_token": _unsubscribe_token(subscriber)}
        return _private(render(request, "subscribers/unsubscribed.html", context))
    if action == "data_link":
        services.subscriber_request_data_link(subscriber=subscriber)
        messages.success(
            request, "We emailed you a link to download or delete your data. It works for one hour."
        )
        return redirect(here)
    if action == "data_export":
        services.subscriber_request_data_export(subscriber=subscriber)
        messages.success(request, "We emailed you your data as a JSON file.")
        return redirect(here)
    messages.error(request, "That action is not available. Nothing was changed.")
    return _manage_page(request, subscriber, token, status=400)


# --- Data rights: download and delete, behind a fresh one-hour link ----------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def data(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="data")
    except InvalidToken:
        return bad_link(request, reason="data")
    delete_form = DeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if request.POST.get("action") != "delete" or not delete_form.is_valid():
            context = {"subscriber": subscriber, "token": token, "delete_form": delete_form}
            return _private(render(request, "subscribers/data.html", context, status=400))
        services.subscriber_delete(subscriber=subscriber)
        return _private(render(request, "subscribers/deleted.html"))
    context = {"subscriber": subscriber, "token": token, "delete_form": DeleteForm()}
    return _private(render(request, "subscribers/data.html", context))


@never_cache
@require_GET
def export(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = subscriber_from_token(token=token, purpose="data")
    except InvalidToken:
        return bad_link(request, reason="data")
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
    # The unsubscribe link sits in every List-Unsubscribe header, where forwarded
    # mails, scanners and archives see it: it unsubscribes and resubscribes, nothing more.
    context = {"subscriber": subscriber, "unsubscribe_token": token}
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
    context = {"subscriber": subscriber, "unsubscribe_token": token}
    if request.method == "POST" and subscriber.status == Status.UNSUBSCRIBED:
        services.subscriber_resubscribe(
            subscriber=subscriber, ip=client_ip(request), user_agent=_user_agent(request)
        )
        return _private(render(request, "subscribers/resubscribe.html", {**context, "done": True}))
    return _private(render(request, "subscribers/resubscribe.html", context))
