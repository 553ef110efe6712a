"""The ESP tracking webhooks (anymail's views), refusing unreadable payloads with a 400.

anymail authenticates a webhook before parsing it, but a payload it cannot parse
(not JSON, not UTF-8, the wrong shape) ends in a 500, which ESPs answer by
retrying the same payload for days. Parsing errors are a bad request; errors
after parsing (in our own suppression code) still raise, so a bug is not hidden.
"""

import anymail.urls
from django.core.exceptions import SuspiciousOperation
from django.urls import URLPattern
from django.views import View


class MalformedWebhookPayload(SuspiciousOperation):
    """Django answers SuspiciousOperation with 400 and logs it to django.security."""


class RefuseMalformedPayload:
    def parse_events(self, request):
        try:
            return list(super().parse_events(request))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise MalformedWebhookPayload(
                f"unreadable {self.esp_name} webhook payload: {exc!r}"[:300]
            ) from exc


def _refusing(pattern: URLPattern) -> URLPattern:
    view_class = getattr(pattern.callback, "view_class", None)
    if view_class is None:
        return pattern
    strict: type[View] = type(view_class.__name__, (RefuseMalformedPayload, view_class), {})
    return URLPattern(
        pattern.pattern,
        strict.as_view(**getattr(pattern.callback, "view_initkwargs", {})),
        pattern.default_args,
        pattern.name,
    )


urlpatterns = [_refusing(pattern) for pattern in anymail.urls.urlpatterns]
app_name = anymail.urls.app_name
