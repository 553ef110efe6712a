"""Admin for the nightly run: runs with a 30-day chart, deliveries, previews,
test sends, re-sends and starting a run by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.mail import get_connection
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from digest.models import Delivery, DigestRun, SubscriberDeliveryRollup
from digest.services.preview import digest_preview
from digest.services.retention import EditionTooOld, deliveries_retention_guard
from digest.services.runs import deliveries_resend, digest_run_launch
from mail.send import PermanentSendError, TransientSendError, send_one
from subscribers.models import Subscriber

CHART_DAYS = 30
User = get_user_model()


class StartRunForm(forms.Form):
    edition = forms.DateField(help_text="The day the digest is for (YYYY-MM-DD).")
    fetch = forms.BooleanField(required=False, initial=True, help_text="Fetch yesterday's papers first.")

    def clean_edition(self) -> date:
        edition: date = self.cleaned_data["edition"]
        try:
            deliveries_retention_guard(edition=edition)
        except EditionTooOld as exc:
            raise forms.ValidationError(str(exc)) from exc
        return edition


# Form fields, ModelAdmin and the inlines take their model as a type argument only in
# django-stubs; at runtime the bases stay bare.
class ReaderField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """A subscriber picked by the admin's autocomplete (their id), or given by address in a link."""

    def to_python(self, value: object) -> Subscriber | None:
        if value in self.empty_values:
            return None
        text = str(value).strip()
        if text.isdigit():
            return super().to_python(text)
        subscriber = Subscriber.objects.filter(email__iexact=text).first()
        if subscriber is None:
            raise forms.ValidationError(f"No subscriber with the address {text}.", code="invalid_choice")
        return subscriber


class PreviewForm(forms.Form):
    subscriber = ReaderField(
        queryset=Subscriber.objects.all(),
        widget=AutocompleteSelect(Delivery._meta.get_field("subscriber"), admin.site),
        help_text="Type part of an address.",
    )
    edition = forms.DateField(help_text="YYYY-MM-DD", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data: QueryDict | dict[str, Any] | None = None, **kwargs: Any) -> None:
        # Links give the address; the autocomplete shows and sends the id.
        self.missing_address = ""
        if data is not None and data.get("subscriber") and not str(data["subscriber"]).isdigit():
            address = str(data["subscriber"]).strip()
            found = Subscriber.objects.filter(email__iexact=address).first()
            data = data.copy()
            data["subscriber"] = str(found.pk) if found else ""
            self.missing_address = "" if found else address
        super().__init__(data, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.missing_address:
            self.errors.pop("subscriber", None)
            self.add_error("subscriber", f"No subscriber with the address {self.missing_address}.")
        return data


class TestSendForm(forms.Form):
    to = forms.EmailField(label="Send a test copy to", max_length=254)

    def clean_to(self) -> str:
        to: str = self.cleaned_data["to"]
        if not test_send_allowed(to):
            raise forms.ValidationError(
                "Test copies go only to a staff user's address or one in DIGEST_TEST_SEND_ALLOWED."
            )
        return to


ACTIVE_RUN = (DigestRun.Status.RUNNING, DigestRun.Status.PLANNING, DigestRun.Status.SENDING)
# Seconds between reloads of a run's page while it runs (a meta refresh: no script needed).
PROGRESS_REFRESH_SECONDS = 3


def run_progress(run: DigestRun) -> dict[str, Any]:
    """Counts for a run's page: what was due, what happened, what is left."""
    uncertain = run.uncertain_count
    done = run.sent_count + run.failed_count + run.empty_count + uncertain
    waiting = Delivery.objects.filter(
        run=run, status__in=(Delivery.Status.PLANNED, Delivery.Status.SENDING)
    ).count()
    if run.status == DigestRun.Status.RUNNING:
        phase = "Fetching papers"
    elif run.status == DigestRun.Status.PLANNING:
        phase = "Planning one delivery per due reader"
    elif run.status == DigestRun.Status.SENDING:
        phase = f"Sending: {waiting} of {run.due_count} deliveries still to go"
    elif run.status == DigestRun.Status.FAILED:
        phase = "The run stopped: nothing more goes out for it. The errors below say why"
    else:
        phase = "Finished"
    return {
        "phase": phase,
        "active": run.status in ACTIVE_RUN,
        "done": done,
        "waiting": waiting,
        "uncertain": uncertain,
        "percent": round(100 * done / run.due_count) if run.due_count else None,
    }


def count_column(field: str, label: str) -> Callable[[admin.ModelAdmin[DigestRun], DigestRun], int]:
    """A list column showing one of the run's counters under a short header."""

    @admin.display(description=label, ordering=field)
    def column(model_admin: admin.ModelAdmin[DigestRun], run: DigestRun) -> int:
        return int(getattr(run, field))

    return column


@admin.register(DigestRun)
class DigestRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "edition",
        "status_link",
        "started_at",
        "papers",
        "due",
        "sent",
        "empty",
        "failed",
        "uncertain",
        "first_error",
    )
    list_display_links = ("edition",)
    list_filter = ("status", "dry_run")
    date_hierarchy = "edition"
    readonly_fields = [field.name for field in DigestRun._meta.fields]
    change_list_template = "admin/digest/digestrun/change_list.html"

    class Media:
        css = {"all": ("digest/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # Short headers: the list's header cells do not wrap.
    papers = count_column("papers_count", "papers")
    due = count_column("due_count", "due")
    sent = count_column("sent_count", "sent")
    empty = count_column("empty_count", "empty")
    failed = count_column("failed_count", "failed")
    uncertain = count_column("uncertain_count", "unsure")

    @admin.display(description="status", ordering="status")
    def status_link(self, run: DigestRun) -> str:
        return format_html(
            '<a class="run-status run-{}" href="{}">{}</a>',
            run.status,
            reverse("admin:digest_digestrun_progress", args=[run.pk]),
            run.get_status_display(),
        )

    @admin.display(description="errors")
    def first_error(self, run: DigestRun) -> str:
        errors = [str(error) for error in run.errors or [] if not str(error).startswith("note:")]
        if not errors:
            return ""
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return Truncator(errors[0]).chars(140) + more

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("start/", self.admin_site.admin_view(self.start_view), name="digest_digestrun_start"),
            path("preview/", self.admin_site.admin_view(self.preview_view), name="digest_digestrun_preview"),
            path(
                "<int:run_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="digest_digestrun_progress",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), **runs_chart()}
        return super().changelist_view(request, extra_context=extra_context)

    # Each view checks its permission first, before doing anything.

    def start_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("digest.start_digestrun"):
            raise PermissionDenied
        form = StartRunForm(request.POST or None, initial={"edition": timezone.now().date()})
        if request.method == "POST" and form.is_valid():
            run = digest_run_launch(edition=form.cleaned_data["edition"], fetch=form.cleaned_data["fetch"])
            return redirect("admin:digest_digestrun_progress", run_id=run.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a digest run",
            "form": form,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/digest/digestrun/start.html", context)

    def progress_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(DigestRun, pk=run_id)
        progress = run_progress(run)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Run {run.pk} for {run.edition}",
            "media": self.media,
            "run": run,
            "progress": progress,
            "refresh_seconds": PROGRESS_REFRESH_SECONDS if progress["active"] else None,
            "errors": [str(e) for e in run.errors or [] if not str(e).startswith("note:")],
            "notes": [str(e)[len("note: ") :] for e in run.errors or [] if str(e).startswith("note:")],
        }
        return TemplateResponse(request, "admin/digest/digestrun/progress.html", context)

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("digest.preview_digest"):
            raise PermissionDenied
        if request.method == "POST" and not request.user.has_perm("digest.send_test_digest"):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else (request.GET or None)
        form = PreviewForm(data, initial={"edition": timezone.now().date()})
        test_form = TestSendForm(request.POST if request.method == "POST" else None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Preview a digest",
            "form": form,
            "test_form": test_form,
            "media": self.media + form.media,
        }
        if form.is_valid():
            subscriber = form.cleaned_data["subscriber"]
            edition = form.cleaned_data["edition"]
            # Inert links: the page's HTML must not hold links that act for the reader.
            preview = digest_preview(subscriber=subscriber, edition=edition, as_test=True)
            context["preview"] = preview
            context["items"] = [(item, preview.titles.get(item.paper_id, "")) for item in preview.ranked]
            if request.method == "POST" and test_form.is_valid():
                self._send_test(request, subscriber, edition, test_form.cleaned_data["to"])
                return redirect(
                    f"{reverse('admin:digest_digestrun_preview')}?subscriber={subscriber.pk}&edition={edition}"
                )
        return TemplateResponse(request, "admin/digest/digestrun/preview.html", context)

    def _send_test(self, request: HttpRequest, subscriber: Subscriber, edition: date, to: str) -> None:
        # Links in a test copy are not the subscriber's own: clicking "unsubscribe"
        # in a colleague's inbox must not unsubscribe the real reader.
        preview = digest_preview(subscriber=subscriber, edition=edition, as_test=True)
        message = preview.message(to=to)
        if message is None:
            self.message_user(request, f"No test sent. {preview.summary}", messages.WARNING)
            return
        message.subject = f"[Test] {message.subject}"
        connection = get_connection()
        try:
            connection.open()
            send_one(connection, message)
        except (PermanentSendError, TransientSendError) as exc:
            self.message_user(request, f"The test could not be sent: {exc}", messages.ERROR)
            return
        finally:
            connection.close()
        self.message_user(request, f"Sent a test of {subscriber.email}'s digest to {to}.", messages.SUCCESS)


def test_send_allowed(address: str) -> bool:
    """A test copy goes to a staff user's own address or one listed in DIGEST_TEST_SEND_ALLOWED."""
    wanted = address.strip().lower()
    if wanted in {allowed.strip().lower() for allowed in settings.DIGEST_TEST_SEND_ALLOWED}:
        return True
    return User.objects.filter(is_staff=True, is_active=True, email__iexact=wanted).exists()


def runs_chart() -> dict[str, Any]:
    """Sent and failed digests per edition for the last 30 days, as SVG bar geometry."""
    since = timezone.now().date() - timedelta(days=CHART_DAYS - 1)
    totals = {
        row["edition"]: row
        for row in DigestRun.objects.filter(edition__gte=since)
        .values("edition")
        .annotate(sent=Sum("sent_count"), failed=Sum("failed_count"))
    }
    days = [since + timedelta(days=n) for n in range(CHART_DAYS)]
    peak = max([1] + [(row["sent"] or 0) + (row["failed"] or 0) for row in totals.values()])
    height, width = 120, 18
    bars = []
    for index, day in enumerate(days):
        row: Any = totals.get(day, {})
        sent, failed = row.get("sent") or 0, row.get("failed") or 0
        sent_h = round(sent / peak * height)
        failed_h = round(failed / peak * height)
        bars.append(
            {
                "date": day,
                "sent": sent,
                "failed": failed,
                "x": index * width,
                "sent_y": height - sent_h,
                "sent_h": sent_h,
                "failed_y": height - sent_h - failed_h,
                "failed_h": failed_h,
            }
        )
    return {
        "chart_bars": bars,
        "chart_height": height,
        "chart_width": width * CHART_DAYS,
        "bar_width": width - 4,
        "chart_sent": sum(bar["sent"] for bar in bars),
        "chart_failed": sum(bar["failed"] for bar in bars),
    }


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # The ESP message id is long and rarely read: it is searchable and on each delivery's page.
    list_display = ("edition", "subscriber", "status", "attempts", "sent_at", "short_error")
    list_filter = ("status", "edition")
    search_fields = ("subscriber__email", "esp_message_id", "subject")
    list_select_related = ("subscriber",)
    readonly_fields = [field.name for field in Delivery._meta.fields]
    actions = ("resend",)
    list_per_page = 100

    class Media:
        css = {"all": ("digest/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, delivery: Delivery) -> str:
        return Truncator(delivery.error).chars(120)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("digest.resend_delivery"))

    @admin.action(description="Re-send selected failed deliveries", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries_resend(delivery_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Queued {count} failed deliveries to be sent again.", messages.SUCCESS)


class DeliveryInline(admin.TabularInline):  # type: ignore[type-arg]
    """A subscriber's delivery history, newest first."""

    model = Delivery
    fields = ("edition", "status", "subject", "sent_at", "attempts", "error")
    readonly_fields = fields
    ordering = ("-edition",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "Delivery history"


class DeliveryRollupInline(admin.TabularInline):  # type: ignore[type-arg]
    """A subscriber's history before DIGEST_DELIVERY_RETENTION_DAYS: the purged rows, counted per month."""

    model = SubscriberDeliveryRollup
    fields = ("month", "status", "count", "first_edition", "last_edition")
    readonly_fields = fields
    ordering = ("-month", "status")
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "Older delivery history (counted per month)"
