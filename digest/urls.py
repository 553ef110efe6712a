from django.urls import path

from digest import views

app_name = "digest"

urlpatterns = [
    path("feedback/<str:token>/<str:vote>/", views.feedback, name="feedback"),
    path("digest/<str:token>/", views.sent_digest, name="view"),
    path("feed/<str:token>/", views.reader_feed, name="feed"),
    path("papers/", views.papers, name="papers"),
    path("papers/<str:day>/", views.papers, name="papers_day"),
    path("archive/", views.archive, name="archive"),
    path("sample-digest/", views.sample_digest, name="sample"),
]
