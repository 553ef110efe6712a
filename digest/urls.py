from django.urls import path

from digest import views

app_name = "digest"

urlpatterns = [
    path("feedback/<str:token>/<str:vote>/", views.feedback, name="feedback"),
]
