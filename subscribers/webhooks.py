"""The ESP tracking webhook (anymail's view), refusing unreadable payloads with a 400.

Only the tracking webhook of the ESP we send through (``ESP_TRACKING_WEBHOOK``,
derived from EMAIL_BACKEND) answers; every other ESP's webhook, and every
inbound webhook, is a 404. Mounted but unconfigured, they answered 500 to
anyone, authenticated or not. The check runs per request, so a settings change
needs no URL reload.

anymail authenticates a webhook before parsing it, but a payload it cannot parse
(not JSON, not UTF-8, the wrong shape) ends in a 500, which ESPs answer by
retrying the same payload for days. Parsing errors are a bad request; errors
after parsing (in our own suppression code) still raise, so a bug is not hidden.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

import anymail.urls
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern
from django.views.decorators.csrf import csrf_exempt


class MalformedWebhookPayload(SuspiciousOperation):
    """Django answers SuspiciousOperation with 400 and logs it to django.security."""


class RefuseMalformedPayload:
    esp_name: str

    def parse_events(self, request: HttpRequest) -> list[Any]:
        view: Any = super()  # anymail's webhook view, which this class is put in front of
        try:
            return list(view.parse_events(request))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise MalformedWebhookPayload(
                f"unreadable {self.esp_name} webhook payload: {exc!r}"[:300]
            ) from exc


def _tracking(pattern: URLPattern) -> bool:
    # Inbound webhooks are never mounted, nor are views anymail could not load
    # (an ESP whose optional package is not installed answers with a lazy error).
    return (pattern.name or "").endswith("_tracking_webhook") and hasattr(pattern.callback, "view_class")


def _only_when_configured(view: Callable[..., HttpResponse], esp: str) -> Callable[..., HttpResponse]:
    # Checked before anymail builds its view, which already fails (500) when the
    # ESP's settings are missing.
    @csrf_exempt  # ESPs post without a CSRF token; ANYMAIL_WEBHOOK_SECRET authenticates them
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if esp != settings.ESP_TRACKING_WEBHOOK:
            raise Http404("no webhook here")
        return view(request, *args, **kwargs)

    return guarded


def _refusing(pattern: URLPattern) -> URLPattern:
    callback: Any = pattern.callback  # anymail's View.as_view() function
    view_class = callback.view_class
    strict: Any = type(view_class.__name__, (RefuseMalformedPayload, view_class), {})
    esp = (pattern.name or "").removesuffix("_tracking_webhook")
    return URLPattern(
        pattern.pattern,
        _only_when_configured(strict.as_view(**callback.view_initkwargs), esp),
        pattern.default_args,
        pattern.name,
    )


urlpatterns = [_refusing(pattern) for pattern in anymail.urls.urlpatterns if _tracking(pattern)]
app_name = anymail.urls.app_name
