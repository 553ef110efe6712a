"""The Content-Security-Policy header: strict on public pages, loosened for the admin."""

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class SiteCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, adding ADMIN_CONTENT_SECURITY_POLICY_UPDATE under ADMIN_URL."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        in_admin = request.path_info.startswith(f"/{settings.ADMIN_URL}")
        if not report_only and parts.update is None and in_admin:
            parts.update = settings.ADMIN_CONTENT_SECURITY_POLICY_UPDATE
        return parts
