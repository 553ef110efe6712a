from django.http import HttpRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from digest.feedback import InvalidFeedbackToken, read_feedback_token
from digest.health import detail_allowed, run_health_checks
from digest.services.feedback import VOTES, FeedbackRejected, feedback_record, feedback_target_resolve


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
def feedback(request, token: str, vote: str):
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
