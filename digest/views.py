from datetime import date

from csp.constants import NONE, SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods

from digest.feedback import InvalidFeedbackToken, read_feedback_token
from digest.feeds import ReaderFeed
from digest.health import detail_allowed, run_health_checks
from digest.models import Delivery, Topic
from digest.sample import sample_digest_html
from digest.selectors import day_topics, featured_days, latest_featured_day, neighbour_days, papers_of_day
from digest.services.feedback import VOTES, FeedbackRejected, feedback_record, feedback_target_resolve
from digest.signed_links import feed_url, read_feed_token, read_view_token
from digest.web import sent_digest_page
from subscribers.models import Subscriber
from subscribers.tokens import InvalidToken

# Readers who left (or whose address was suppressed) have no feed any more.
FEED_STATUSES = (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED, Subscriber.Status.PENDING)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    token = request.headers.get("X-Healthz-Token") or request.GET.get("token")
    results = run_health_checks(detail=detail_allowed(token))
    failing = sorted(name for name, state in results.items() if state != "ok")
    body = {"status": "error" if failing else "ok", "failing": failing, "services": results}
    return JsonResponse(body, status=503 if failing else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def feedback(request: HttpRequest, token: str, vote: str) -> HttpResponse:
    """GET shows the paper and a button (mail scanners open links); only the POST votes."""
    if vote not in VOTES:
        return render(request, "digest/feedback_invalid.html", {"reason": "That is not a vote."}, status=400)
    try:
        subscriber, paper = feedback_target_resolve(target=read_feedback_token(token))
    except InvalidFeedbackToken:
        reason = "The link is incomplete or has been changed."
        return render(request, "digest/feedback_invalid.html", {"reason": reason}, status=400)
    except FeedbackRejected as exc:
        return render(request, "digest/feedback_invalid.html", {"reason": str(exc)}, status=400)
    context = {"paper": paper, "vote": vote, "recorded": False}
    if request.method == "POST":
        feedback_record(subscriber=subscriber, paper=paper, vote=VOTES[vote])
        context["recorded"] = True
    return render(request, "digest/feedback.html", context)


def _private(response: HttpResponse) -> HttpResponse:
    """Pages behind a personal link are kept out of search engines and shared caches."""
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response


def _link_error(request: HttpRequest, *, status: int) -> HttpResponse:
    if status == 400:
        reason = "The link is incomplete or has been changed."
    else:
        reason = "This link is no longer valid: it was replaced by a newer one, or the digest is gone."
    return _private(render(request, "digest/link_invalid.html", {"reason": reason}, status=status))


@require_http_methods(["GET", "HEAD"])
def sent_digest(request: HttpRequest, token: str) -> HttpResponse:
    """One sent digest in the browser, from the signed link in its header."""
    try:
        ref = read_view_token(token)
    except InvalidToken:
        return _link_error(request, status=400)
    delivery = (
        Delivery.objects.select_related("subscriber").filter(pk=ref.id, status=Delivery.Status.SENT).first()
    )
    if delivery is None or delivery.subscriber.token_version != ref.token_version:
        return _link_error(request, status=404)
    page = sent_digest_page(delivery=delivery)
    subscriber = delivery.subscriber
    context = {
        "page": page,
        "feed_url": feed_url(subscriber_id=subscriber.pk, token_version=subscriber.token_version),
    }
    return _private(render(request, "digest/sent_digest.html", context))


@require_http_methods(["GET", "HEAD"])
def reader_feed(request: HttpRequest, token: str) -> HttpResponse:
    """A reader's Atom feed, behind a signed link that bumping token_version revokes."""
    try:
        ref = read_feed_token(token)
    except InvalidToken:
        return _link_error(request, status=400)
    subscriber = Subscriber.objects.filter(
        pk=ref.id, token_version=ref.token_version, status__in=FEED_STATUSES
    ).first()
    if subscriber is None:
        return _link_error(request, status=404)
    return _private(ReaderFeed()(request, subscriber=subscriber))


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Http404("Not a date: use YYYY-MM-DD.") from exc


@require_http_methods(["GET", "HEAD"])
def papers(request: HttpRequest, day: str | None = None) -> HttpResponse:
    """The day's papers, most upvoted first, filterable by topic; the latest day at /papers/."""
    shown = _parse_day(day) if day else latest_featured_day()
    topic_slug = request.GET.get("topic", "").strip()
    topic = None
    if topic_slug:
        topic = Topic.objects.filter(slug=topic_slug, is_active=True).first()
        if topic is None:
            return render(
                request, "digest/papers_day.html", {"unknown_topic": True, "day": shown}, status=404
            )
    if shown is None:
        return render(request, "digest/papers_day.html", {"day": None, "papers": []})
    items = papers_of_day(day=shown, topic=topic.slug if topic else None)
    if day and not items and topic is None:
        raise Http404("No papers were featured that day.")
    earlier, later = neighbour_days(shown)
    context = {
        "day": shown,
        "papers": items,
        "topic": topic,
        "topics": day_topics(day=shown),
        "earlier": earlier,
        "later": later,
        "is_latest": day is None,
    }
    return render(request, "digest/papers_day.html", context)


@require_http_methods(["GET", "HEAD"])
def archive(request: HttpRequest) -> HttpResponse:
    """Every day with papers, newest first."""
    return render(request, "digest/archive.html", {"days": featured_days()})


@xframe_options_sameorigin
@csp_replace({"style-src": [UNSAFE_INLINE], "frame-ancestors": [SELF], "form-action": [NONE]})
@require_http_methods(["GET", "HEAD"])
def sample_digest(request: HttpRequest) -> HttpResponse:
    """The sample digest on the signup page: the real email, shown in a sandboxed frame.

    An email carries its styles inline, so this one document may use inline
    styles; it can run no script and only our own pages may frame it."""
    return HttpResponse(sample_digest_html())
