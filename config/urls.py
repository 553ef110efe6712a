from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from digest import views as digest_views
from digest.metrics import metrics_view


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Resolved per request: the hashed name comes from the static manifest, which
    # need not exist for the URLconf (and /healthz) to load.
    return HttpResponsePermanentRedirect(static("favicon.svg"))


urlpatterns = [
    path("healthz", digest_views.healthz, name="healthz"),
    # Prometheus; behind METRICS_TOKEN or METRICS_ALLOWED_IPS, 404 when neither is set.
    path("metrics", metrics_view, name="metrics"),
    # Browsers ask for /favicon.ico on pages without an icon link, such as the admin's.
    path("favicon.ico", favicon),
    path(settings.ADMIN_URL, admin.site.urls),
    # ESP tracking webhooks (bounces, complaints), protected by ANYMAIL_WEBHOOK_SECRET;
    # an unreadable payload is answered 400 (subscribers/webhooks.py).
    path("anymail/", include("subscribers.webhooks")),
    path("", include("digest.urls")),
    path("", include("subscribers.urls")),
]

# Branded error pages that need nothing but templates (config/errors.py).
handler400 = "config.errors.bad_request"
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"
