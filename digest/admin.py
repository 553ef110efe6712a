"""Admin for curating papers and editing the topic taxonomy."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from digest.models import Paper, PaperTopic, Topic
from digest.selectors import topics_with_paper_counts
from digest.services import papers_retag
from digest.sources.base import SOURCES


def queue_fetch(day: date, source: str) -> None:
    """Queue the fetch task once the current transaction commits."""
    from digest.tasks import fetch_papers_task

    transaction.on_commit(lambda: fetch_papers_task.delay(day.isoformat(), source))


class PaperTopicInline(admin.TabularInline):
    model = PaperTopic
    extra = 1
    fields = ("topic", "score", "set_by_curator")
    readonly_fields = ("set_by_curator",)
    autocomplete_fields = ("topic",)
    verbose_name = "topic"
    verbose_name_plural = "Topics (rows you add or edit here are kept by retagging; score 0 removes a topic)"


class TopicFilter(admin.SimpleListFilter):
    title = "topic"
    parameter_name = "topic"

    def lookups(self, request, model_admin):
        return [(topic.slug, topic.name) for topic in Topic.objects.order_by("name")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(
                paper_topics__topic__slug=self.value(), paper_topics__score__gt=0
            ).distinct()
        return queryset


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [(source, source) for source in SOURCES]

    def queryset(self, request, queryset):
        if self.value() in SOURCES:
            # Works on PostgreSQL and SQLite alike: the JSON list as text holds "hf".
            return queryset.filter(sources__icontains=f'"{self.value()}"')
        return queryset


class FetchNowForm(forms.Form):
    day = forms.DateField(
        initial=lambda: timezone.now().date() - timedelta(days=1),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The Hugging Face featured day (or arXiv submission day) to fetch.",
    )
    source = forms.ChoiceField(
        choices=[
            ("hf", "Hugging Face API (falls back to the papers page)"),
            ("hf-page", "Hugging Face papers page"),
            ("arxiv", "arXiv"),
        ],
        initial="hf",
    )


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):
    list_display = (
        "arxiv_id",
        "title_short",
        "featured_on",
        "upvotes",
        "num_comments",
        "topic_list",
        "hidden",
        "pinned",
    )
    list_display_links = ("arxiv_id", "title_short")
    list_editable = ("hidden", "pinned")
    list_filter = ("featured_on", TopicFilter, SourceFilter, "hidden", "pinned")
    search_fields = ("arxiv_id", "title", "abstract", "note")
    ordering = ("-featured_on", "-upvotes")
    sortable_by = ("arxiv_id", "featured_on", "upvotes", "num_comments")
    date_hierarchy = "featured_on"
    list_per_page = 50
    inlines = [PaperTopicInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["hide", "unhide", "pin", "unpin", "retag", "fetch_days_again"]
    readonly_fields = (
        "arxiv_id",
        "links",
        "authors",
        "published_at",
        "featured_on",
        "upvotes",
        "num_comments",
        "github_stars",
        "ai_keywords",
        "sources",
        "categories",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        ("Curation", {"fields": ("hidden", "pinned", "note")}),
        ("Paper", {"fields": ("arxiv_id", "links", "title", "abstract", "authors", "published_at")}),
        (
            "Hugging Face",
            {
                "fields": (
                    "featured_on",
                    "upvotes",
                    "num_comments",
                    "github_repo",
                    "github_stars",
                    "project_page",
                    "thumbnail_url",
                    "ai_keywords",
                    "ai_summary",
                )
            },
        ),
        ("Provenance", {"fields": ("sources", "categories", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("paper_topics__topic")

    @admin.display(description="title")
    def title_short(self, paper: Paper) -> str:
        return paper.title if len(paper.title) <= 90 else paper.title[:87] + "…"

    @admin.display(description="topics")
    def topic_list(self, paper: Paper) -> str:
        rows = sorted((row for row in paper.paper_topics.all() if row.score > 0), key=lambda row: -row.score)
        return ", ".join(row.topic.slug + ("*" if row.set_by_curator else "") for row in rows)

    @admin.display(description="links")
    def links(self, paper: Paper):
        from django.utils.html import format_html

        return format_html(
            '<a href="{}" rel="noopener">Hugging Face</a> · <a href="{}" rel="noopener">arXiv</a> · '
            '<a href="{}" rel="noopener">PDF</a>',
            paper.hf_url,
            paper.abs_url,
            paper.pdf_url,
        )

    def save_formset(self, request, form, formset, change):
        """Topic rows edited here become curator rows, which retagging never overrides.

        Deleting an automatic tag keeps a curator row with score 0, so the
        next retag does not bring the topic back.
        """
        if formset.model is not PaperTopic:
            return super().save_formset(request, form, formset, change)
        rows = formset.save(commit=False)
        for row in rows:
            row.set_by_curator = True
            row.save()
        for row in formset.deleted_objects:
            if row.set_by_curator:
                row.delete()
            else:
                row.set_by_curator = True
                row.score = 0.0
                row.save(update_fields=["set_by_curator", "score"])
        formset.save_m2m()

    @admin.action(description="Hide selected papers")
    def hide(self, request, queryset):
        self.message_user(request, f"Hid {queryset.update(hidden=True)} papers.")

    @admin.action(description="Unhide selected papers")
    def unhide(self, request, queryset):
        self.message_user(request, f"Unhid {queryset.update(hidden=False)} papers.")

    @admin.action(description="Pin selected papers")
    def pin(self, request, queryset):
        self.message_user(request, f"Pinned {queryset.update(pinned=True)} papers.")

    @admin.action(description="Unpin selected papers")
    def unpin(self, request, queryset):
        self.message_user(request, f"Unpinned {queryset.update(pinned=False)} papers.")

    @admin.action(description="Retag selected papers (curator tags are kept)")
    def retag(self, request, queryset):
        count = papers_retag(paper_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Retagged {count} papers.")

    @admin.action(description="Fetch the featured days of selected papers again now")
    def fetch_days_again(self, request, queryset):
        days = sorted({day for day in queryset.values_list("featured_on", flat=True) if day})
        for day in days:
            queue_fetch(day, "hf")
        self.message_user(request, f"Queued a fetch for {len(days)} day(s).")

    def get_urls(self):
        custom = [
            path(
                "fetch-now/",
                self.admin_site.admin_view(self.fetch_now_view),
                name="digest_paper_fetch_now",
            )
        ]
        return custom + super().get_urls()

    def fetch_now_view(self, request):
        """GET shows the form; POST queues the fetch task and returns to the list."""
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = FetchNowForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            day, source = form.cleaned_data["day"], form.cleaned_data["source"]
            queue_fetch(day, source)
            self.message_user(
                request, f"Queued a fetch of {day.isoformat()} from {source}.", messages.SUCCESS
            )
            return redirect(reverse("admin:digest_paper_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": "Fetch papers now",
        }
        return TemplateResponse(request, "admin/digest/paper/fetch_now.html", context)


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active", "paper_count", "phrase_count")
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "description", "phrases")
    ordering = ("name",)
    actions = ["retag_all"]
    fields = ("name", "slug", "description", "phrases", "is_active")

    def get_readonly_fields(self, request, obj=None):
        # Slugs are referenced by subscribers' preferences; new topics choose theirs once.
        return ("slug",) if obj else ()

    def get_queryset(self, request):
        return topics_with_paper_counts(super().get_queryset(request))

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "phrases":
            kwargs["widget"] = forms.Textarea(attrs={"rows": 24, "cols": 60, "spellcheck": "false"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="papers", ordering="paper_count")
    def paper_count(self, topic: Topic) -> int:
        return topic.paper_count  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="phrases")
    def phrase_count(self, topic: Topic) -> int:
        return len(topic.phrase_list)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and {"phrases", "name", "description", "is_active"} & set(form.changed_data):
            self.message_user(
                request,
                "Topic saved. Existing papers keep their tags until you run “Retag all papers” "
                "(new papers use the new phrases right away).",
                messages.INFO,
            )

    @admin.action(description="Retag all papers with the current topics")
    def retag_all(self, request, queryset):
        count = papers_retag(paper_ids=None)
        self.message_user(request, f"Retagged {count} papers.")


# Runs, deliveries, previews and test sends live in their own module.
from digest import admin_digest  # noqa: E402, F401
