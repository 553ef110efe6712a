from __future__ import annotations

import csv
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from digest.admin_digest import DeliveryInline, DeliveryRollupInline
from subscribers import services
from subscribers.imports import SOURCE_MAX_LENGTH, ImportFileError, read_upload, subscribers_import
from subscribers.models import DeletionRecord, Subscriber, SuppressionEvent
from subscribers.selectors import subscriber_growth, subscriber_status_counts

CONSENT_FIELDS = (
    "signup_at",
    "signup_ip",
    "signup_user_agent",
    "confirmed_at",
    "confirm_ip",
    "confirm_user_agent",
    "consent_source",
)
# What happened to a reader after signing up; shown, never edited.
HISTORY_FIELDS = (
    "unsubscribed_at",
    "unsubscribe_reason",
    "suppressed_at",
    "suppression_reason",
    "paused_at",
    "resumed_at",
    "last_digest_at",
    "soft_bounce_count",
)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8, with a header row: email, topics, interests, frequency (and optionally weekday).",
    )
    consented = forms.BooleanField(
        required=False,
        label="These readers already consented",
        help_text="They opted in elsewhere: store them as active, with no confirmation email. "
        "Unticked, each gets the double opt-in email and stays pending until they confirm.",
    )
    source = forms.CharField(
        required=False,
        max_length=SOURCE_MAX_LENGTH,
        label="Source of the list",
        help_text="Where and how they signed up, e.g. “NeurIPS 2026 booth sign-up sheet”. Required with "
        "consent: it is stored on each reader as the proof.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    dry_run = forms.BooleanField(required=False, label="Only check the file", initial=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("consented") and not (data.get("source") or "").strip():
            self.add_error("source", "Say where these readers gave their consent: it is kept as proof.")
        return data


# ModelAdmin takes its model as a type argument only in django-stubs; at runtime the bases stay bare.
@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Days, not timestamps, so the list fits a 1280 px screen; each page has the exact times.
    list_display = (
        "email",
        "status",
        "frequency",
        "topic_count",
        "joined",
        "confirmed",
        "last_digest",
    )
    list_filter = ("status", "frequency", "topics")
    search_fields = ("email", "interests")
    date_hierarchy = "created_at"
    # Explicit: the topic count annotation groups rows, and grouped queries drop Meta.ordering.
    ordering = ("-created_at",)
    filter_horizontal = ("topics",)
    list_per_page = 100

    class Media:
        css = {"all": ("digest/admin.css",)}

    actions = ("suppress_selected", "resend_confirmation", "export_csv")
    inlines = (DeliveryInline, DeliveryRollupInline)
    readonly_fields = (
        "preview_link",
        *CONSENT_FIELDS,
        *HISTORY_FIELDS,
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("email", "status")}),
        (
            "Preferences",
            {
                "fields": (
                    "topics",
                    "interests",
                    "arxiv_categories",
                    "followed_authors",
                    "frequency",
                    "weekday",
                    "digest_size",
                    "preview_link",
                )
            },
        ),
        ("Consent", {"fields": CONSENT_FIELDS}),
        (
            "History",
            {
                "fields": (
                    *HISTORY_FIELDS,
                    "token_version",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subscriber]:
        people: QuerySet[Subscriber] = super().get_queryset(request)
        return people.annotate(topic_total=Count("topics", distinct=True))

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="subscribers_subscriber_import",
            )
        ]
        return own + super().get_urls()

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """GET shows the form; POST checks the whole file, then imports it or reports why not."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            who = request.user.get_username()
            source = form.cleaned_data["source"].strip()
            try:
                report = subscribers_import(
                    text=read_upload(form.cleaned_data["file"].read()),
                    consented=form.cleaned_data["consented"],
                    source=f"{source} (uploaded by {who})" if source else f"uploaded by {who}",
                    dry_run=form.cleaned_data["dry_run"],
                )
            except ImportFileError as exc:
                form.add_error("file", f"{exc} Nothing was imported.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import subscribers",
            "form": form,
            "report": report,
            "listed": sorted(report.errors + report.skipped, key=lambda line: line.line) if report else [],
        }
        return TemplateResponse(request, "admin/subscribers/subscriber/import.html", context)

    @admin.display(description="Digest")
    def preview_link(self, obj: Subscriber) -> str:
        if not obj.pk:
            return "–"
        preview = reverse("admin:digest_digestrun_preview")
        today = urlencode({"subscriber": obj.pk, "edition": timezone.now().date().isoformat()})
        links = format_html('<a href="{}?{}">Preview the digest they would get today</a>', preview, today)
        last = (
            obj.deliveries.filter(status="sent")
            .order_by("-edition")
            .values_list("edition", flat=True)
            .first()
        )
        if last is not None:
            query = urlencode({"subscriber": obj.pk, "edition": last.isoformat()})
            links += format_html(' · <a href="{}?{}">the last one they got ({})</a>', preview, query, last)
        return links

    @admin.display(description="joined", ordering="created_at")
    def joined(self, obj: Subscriber) -> str:
        return _day(obj.created_at)

    @admin.display(description="confirmed", ordering="confirmed_at")
    def confirmed(self, obj: Subscriber) -> str:
        return _day(obj.confirmed_at)

    @admin.display(description="last digest", ordering="last_digest_at")
    def last_digest(self, obj: Subscriber) -> str:
        return _day(obj.last_digest_at)

    @admin.display(description="Topics", ordering="topic_total")
    def topic_count(self, obj: Subscriber) -> int:
        return int(getattr(obj, "topic_total", 0))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        growth = subscriber_growth(days=30)
        peak = max([max(day["signups"], day["confirmations"]) for day in growth] + [1])
        bar_width = 18
        chart_height = 120
        bars = []
        for index, day in enumerate(growth):
            signup_h = round(day["signups"] / peak * chart_height)
            confirm_h = round(day["confirmations"] / peak * chart_height)
            bars.append(
                {
                    **day,
                    "x": index * bar_width,
                    "signup_y": chart_height - signup_h,
                    "signup_h": signup_h,
                    "confirm_x": index * bar_width + bar_width // 2,
                    "confirm_y": chart_height - confirm_h,
                    "confirm_h": confirm_h,
                }
            )
        extra_context = {
            **(extra_context or {}),
            "status_counts": [
                (Subscriber.Status(status).label, count)
                for status, count in subscriber_status_counts().items()
            ],
            "growth": bars,
            "growth_total_signups": sum(day["signups"] for day in growth),
            "growth_total_confirmations": sum(day["confirmations"] for day in growth),
            "chart_width": bar_width * len(growth),
            "chart_height": chart_height,
            "bar_half": bar_width // 2 - 1,
            "peak": peak,
        }
        return super().changelist_view(request, extra_context=extra_context)

    @admin.action(description="Suppress selected subscribers (never email again)")
    def suppress_selected(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        done = sum(
            services.subscriber_suppress(subscriber=subscriber, reason="suppressed by an admin")
            for subscriber in queryset
        )
        self.message_user(request, f"Suppressed {done} subscriber(s).", messages.SUCCESS)

    @admin.action(description="Resend the confirmation email (pending only)")
    def resend_confirmation(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        sent = sum(
            services.subscriber_resend_confirmation(subscriber=subscriber)
            for subscriber in queryset.filter(status=Subscriber.Status.PENDING)
        )
        skipped = queryset.count() - sent
        self.message_user(
            request,
            f"Queued {sent} confirmation email(s)." + (f" Skipped {skipped} not pending." if skipped else ""),
            messages.SUCCESS,
        )

    @admin.action(description="Export selected subscribers as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="subscribers-{stamp}.csv"'
        writer = csv.writer(response)
        writer.writerow(
            ["email", "status", "frequency", "weekday", "digest_size", "topics", "interests", "created_at",
             "confirmed_at", "unsubscribed_at"]
        )  # fmt: skip
        for subscriber in queryset.prefetch_related("topics").order_by("pk"):
            writer.writerow(
                [
                    _csv_safe(subscriber.email),
                    subscriber.status,
                    subscriber.frequency,
                    subscriber.get_weekday_display(),
                    subscriber.digest_size,
                    " ".join(sorted(topic.slug for topic in subscriber.topics.all())),
                    _csv_safe("; ".join(subscriber.interest_list)),
                    subscriber.created_at.isoformat(),
                    subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else "",
                    subscriber.unsubscribed_at.isoformat() if subscriber.unsubscribed_at else "",
                ]
            )
        return response


def _day(moment: datetime | None) -> str:
    return timezone.localtime(moment).date().isoformat() if moment else "–"


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@admin.register(SuppressionEvent)
class SuppressionEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("received_at", "email", "event_type", "esp", "reason")
    list_filter = ("event_type", "esp")
    search_fields = ("email", "event_id")
    raw_id_fields = ("subscriber",)
    readonly_fields = ("event_id", "email", "event_type", "reason", "esp", "received_at", "subscriber")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(DeletionRecord)
class DeletionRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("date", "reason", "count")
    list_filter = ("reason",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DeletionRecord | None = None) -> bool:
        return False
