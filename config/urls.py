from django.conf import settings
from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView

from digest import views as digest_views

urlpatterns = [
    path("healthz", digest_views.healthz, name="healthz"),
    path(settings.ADMIN_URL, admin.site.urls),
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
]
