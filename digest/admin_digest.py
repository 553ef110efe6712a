"""Admin for the nightly run: runs with a 30-day chart, deliveries, previews,
test sends, re-sends and starting a run by hand."""

from datetime import date, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.mail import get_connection
from django.db import transaction
from django.db.models import Sum
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from digest.models import Delivery, DigestRun, SubscriberDeliveryRollup
from digest.services.preview import digest_preview
from digest.services.retention import EditionTooOld, deliveries_retention_guard
from digest.services.runs import deliveries_resend
from mail.send import PermanentSendError, TransientSendError, send_one
from subscribers.models import Subscriber

CHART_DAYS = 30


class StartRunForm(forms.Form):
    edition = forms.DateField(help_text="The day the digest is for (YYYY-MM-DD).")
    fetch = forms.BooleanField(required=False, initial=True, help_text="Fetch yesterday's papers first.")

    def clean_edition(self) -> date:
        edition = self.cleaned_data["edition"]
        try:
            deliveries_retention_guard(edition=edition)
        except EditionTooOld as exc:
            raise forms.ValidationError(str(exc)) from exc
        return edition


class PreviewForm(forms.Form):
    subscriber = forms.ModelChoiceField(queryset=Subscriber.objects.order_by("email"), to_field_name="email")
    edition = forms.DateField(help_text="YYYY-MM-DD")


class TestSendForm(forms.Form):
    to = forms.EmailField(label="Send a test copy to", max_length=254)


@admin.register(DigestRun)
class DigestRunAdmin(admin.ModelAdmin):
    list_display = (
        "edition",
        "status",
        "started_at",
        "duration",
        "papers_count",
        "due_count",
        "sent_count",
        "empty_count",
        "failed_count",
        "uncertain_count",
    )
    list_filter = ("status", "dry_run")
    date_hierarchy = "edition"
    readonly_fields = [field.name for field in DigestRun._meta.fields]
    change_list_template = "admin/digest/digestrun/change_list.html"

    def has_add_permission(self, request):
        return False

    @admin.display(description="took")
    def duration(self, run: DigestRun) -> str:
        if not run.finished_at:
            return "–"
        return f"{(run.finished_at - run.started_at).total_seconds():.1f} s"

    def get_urls(self):
        own = [
            path("start/", self.admin_site.admin_view(self.start_view), name="digest_digestrun_start"),
            path("preview/", self.admin_site.admin_view(self.preview_view), name="digest_digestrun_preview"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), **runs_chart()}
        return super().changelist_view(request, extra_context=extra_context)

    def start_view(self, request):
        if not request.user.has_perm("digest.change_digestrun"):
            raise PermissionDenied
        form = StartRunForm(request.POST or None, initial={"edition": timezone.now().date()})
        if request.method == "POST" and form.is_valid():
            from digest.tasks import nightly_run

            edition = form.cleaned_data["edition"].isoformat()
            fetch = form.cleaned_data["fetch"]
            transaction.on_commit(lambda: nightly_run.delay(edition, fetch))
            self.message_user(request, f"The run for {edition} was started.", messages.SUCCESS)
            return redirect("admin:digest_digestrun_changelist")
        context = {**self.admin_site.each_context(request), "title": "Start a digest run", "form": form}
        return TemplateResponse(request, "admin/digest/digestrun/start.html", context)

    def preview_view(self, request):
        data = request.POST if request.method == "POST" else (request.GET or None)
        form = PreviewForm(data, initial={"edition": timezone.now().date()})
        test_form = TestSendForm(request.POST if request.method == "POST" else None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview a digest",
            "form": form,
            "test_form": test_form,
        }
        if form.is_valid():
            subscriber = form.cleaned_data["subscriber"]
            edition = form.cleaned_data["edition"]
            preview = digest_preview(subscriber=subscriber, edition=edition)
            context["preview"] = preview
            context["items"] = [(item, preview.titles.get(item.paper_id, "")) for item in preview.ranked]
            if request.method == "POST" and test_form.is_valid():
                self._send_test(request, subscriber, edition, test_form.cleaned_data["to"])
                return redirect(
                    f"{reverse('admin:digest_digestrun_preview')}?subscriber={subscriber.email}&edition={edition}"
                )
        return TemplateResponse(request, "admin/digest/digestrun/preview.html", context)

    def _send_test(self, request, subscriber, edition: date, to: str) -> None:
        # Links in a test copy are not the subscriber's own: clicking "unsubscribe"
        # in a colleague's inbox must not unsubscribe the real reader.
        preview = digest_preview(subscriber=subscriber, edition=edition, as_test=True)
        message = preview.message(to=to)
        if message is None:
            self.message_user(
                request, "Nothing passes this reader's relevance gate: no test sent.", messages.WARNING
            )
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


def runs_chart() -> dict:
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
        row = totals.get(day, {})
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
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("edition", "subscriber", "status", "attempts", "sent_at", "esp_message_id", "short_error")
    list_filter = ("status", "edition")
    search_fields = ("subscriber__email", "esp_message_id", "subject")
    list_select_related = ("subscriber",)
    readonly_fields = [field.name for field in Delivery._meta.fields]
    actions = ("resend",)
    list_per_page = 100

    def has_add_permission(self, request):
        return False

    @admin.display(description="error")
    def short_error(self, delivery: Delivery) -> str:
        return delivery.error[:120]

    @admin.action(description="Re-send selected failed deliveries", permissions=["change"])
    def resend(self, request, queryset):
        count = deliveries_resend(delivery_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Queued {count} failed deliveries to be sent again.", messages.SUCCESS)


class DeliveryInline(admin.TabularInline):
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


class DeliveryRollupInline(admin.TabularInline):
    """A subscriber's history before DIGEST_DELIVERY_RETENTION_DAYS: the purged rows, counted per month."""

    model = SubscriberDeliveryRollup
    fields = ("month", "status", "count", "first_edition", "last_edition")
    readonly_fields = fields
    ordering = ("-month", "status")
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "Older delivery history (counted per month)"
