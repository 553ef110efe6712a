from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from digest import views as digest_views

urlpatterns = [
    path("healthz", digest_views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages without an icon link, such as the admin's.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
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
