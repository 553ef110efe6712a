from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from digest import views as digest_views

urlpatterns = [
    path("healthz", digest_views.healthz, name="healthz"),
    path(settings.ADMIN_URL, admin.site.urls),
    # ESP tracking webhooks (bounces, complaints), protected by ANYMAIL_WEBHOOK_SECRET.
    path("anymail/", include("anymail.urls")),
    path("", include("digest.urls")),
    path("", include("subscribers.urls")),
]
