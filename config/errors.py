"""Error pages for the whole site.

Django's default handlers are wrapped in ``requires_csrf_token``, which runs the
CSRF check again and so reads the request body again: a body Django cannot
parse (say, a form declared as UTF-16) raised once more inside the 400 handler
and became a 500. These render their page from static templates only: no
request body, no database, no session, no authentication, so they also work
while PostgreSQL or Redis is down.
"""

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseServerError,
)
from django.template.loader import render_to_string


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return HttpResponseBadRequest(render_to_string("400.html"))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return HttpResponseForbidden(render_to_string("403.html"))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return HttpResponseNotFound(render_to_string("404.html"))


def server_error(request: HttpRequest) -> HttpResponse:
    return HttpResponseServerError(render_to_string("500.html"))
