"""Admin for curating papers and editing the topic taxonomy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from digest.background import task_start_after_commit
from digest.models import Paper, PaperTopic, TermAlias, Topic
from digest.selectors import topics_with_paper_counts
from digest.services import papers_load_text, papers_retag
from digest.sources import SourceError, http
from digest.sources.base import SOURCES

admin.site.site_header = f"{settings.PRODUCT_NAME} admin"
admin.site.site_title = f"{settings.PRODUCT_NAME} admin"
admin.site.index_title = f"Papers, readers and digests of {settings.PRODUCT_NAME}"
# The app list sidebar costs a third of a laptop's width; every list needs it more.
# The home page and the breadcrumbs still lead everywhere.
admin.site.enable_nav_sidebar = False


def queue_fetch(day: date, source: str) -> None:
    """Fetch after the request: a Celery task on commit, or a thread in the embedded mode."""
    from digest.tasks import fetch_papers_task

    task_start_after_commit(fetch_papers_task, day.isoformat(), source)


def last_featured_day() -> date:
    """The newest day with papers, so "Fetch now" offers a day that exists (offline too)."""
    latest: date | None = Paper.objects.aggregate(day=Max("featured_on"))["day"]
    return latest or timezone.now().date() - timedelta(days=1)


# ModelAdmin and the inlines take their model as a type argument only in django-stubs;
# at runtime the bases stay bare.
class PaperTopicInline(admin.TabularInline):  # type: ignore[type-arg]
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

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(topic.slug, topic.name) for topic in Topic.objects.order_by("name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Paper]) -> QuerySet[Paper]:
        if self.value():
            return queryset.filter(
                paper_topics__topic__slug=self.value(), paper_topics__score__gt=0
            ).distinct()
        return queryset


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(source, source) for source in SOURCES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Paper]) -> QuerySet[Paper]:
        if self.value() in SOURCES:
            # Works on PostgreSQL and SQLite alike: the JSON list as text holds "hf".
            return queryset.filter(sources__icontains=f'"{self.value()}"')
        return queryset


class FetchNowForm(forms.Form):
    day = forms.DateField(
        initial=last_featured_day,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The Hugging Face featured day (or arXiv submission day) to fetch; "
        "it starts at the newest day stored.",
    )
    source = forms.ChoiceField(
        choices=[
            ("hf", "Hugging Face API (falls back to the papers page)"),
            ("hf-page", "Hugging Face papers page"),
            ("arxiv", "arXiv"),
        ],
        initial="hf",
    )
    saved_file = forms.FileField(
        required=False,
        label="Or load a saved response",
        help_text="A saved Hugging Face API JSON response, papers page (HTML) or arXiv Atom feed; the "
        "format is detected. It is stored at once, whole or not at all, and the day and source above "
        "are ignored.",
    )

    def clean_saved_file(self) -> str | None:
        """The upload's text, under the same size cap as a fetched response."""
        upload = self.cleaned_data.get("saved_file")
        if not upload:
            return None
        if upload.size > http.MAX_RESPONSE_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size} bytes, over the {http.MAX_RESPONSE_BYTES}-byte cap. "
                "Nothing was stored."
            )
        text: str = upload.read().decode("utf-8", errors="replace")
        return text


def _flag_action(field: str, value: bool, *, description: str, done: str) -> Callable[..., None]:
    """An admin action setting one curator flag on the selected papers."""

    @admin.action(description=description)
    def action(model_admin: admin.ModelAdmin[Paper], request: HttpRequest, queryset: QuerySet[Paper]) -> None:
        model_admin.message_user(request, f"{done} {queryset.update(**{field: value})} papers.")

    return action


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # What curators decide with, in a width that fits 1280 px: the title wraps, the
    # comment count and arXiv id (searchable, and on each paper's page) stay off the list.
    list_display = (
        "title_short",
        "featured_on",
        "upvotes",
        "topic_list",
        "hidden",
        "pinned",
    )
    list_display_links = ("title_short",)
    list_editable = ("hidden", "pinned")
    list_filter = ("featured_on", TopicFilter, SourceFilter, "hidden", "pinned")
    search_fields = ("arxiv_id", "title", "abstract", "note")
    ordering = ("-featured_on", "-upvotes")
    sortable_by = ("featured_on", "upvotes")
    date_hierarchy = "featured_on"
    list_per_page = 50
    inlines = [PaperTopicInline]

    class Media:
        css = {"all": ("digest/admin.css",)}

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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Paper]:
        papers: QuerySet[Paper] = super().get_queryset(request)
        return papers.prefetch_related("paper_topics__topic")

    @admin.display(description="title")
    def title_short(self, paper: Paper) -> str:
        """The title (cut at 90 characters), which links to the paper."""
        return paper.title if len(paper.title) <= 90 else paper.title[:87] + "…"

    @admin.display(description="topics")
    def topic_list(self, paper: Paper) -> str:
        rows = sorted((row for row in paper.paper_topics.all() if row.score > 0), key=lambda row: -row.score)
        return ", ".join(row.topic.slug + ("*" if row.set_by_curator else "") for row in rows)

    @admin.display(description="links")
    def links(self, paper: Paper) -> str:
        from django.utils.html import format_html

        return format_html(
            '<a href="{}" rel="noopener">Hugging Face</a> · <a href="{}" rel="noopener">arXiv</a> · '
            '<a href="{}" rel="noopener">PDF</a>',
            paper.hf_url,
            paper.abs_url,
            paper.pdf_url,
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Topic rows edited here become curator rows, which retagging never overrides.

        Deleting an automatic tag keeps a curator row with score 0, so the
        next retag does not bring the topic back.
        """
        if formset.model is not PaperTopic:
            super().save_formset(request, form, formset, change)
            return
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

    hide = _flag_action("hidden", True, description="Hide selected papers", done="Hid")
    unhide = _flag_action("hidden", False, description="Unhide selected papers", done="Unhid")
    pin = _flag_action("pinned", True, description="Pin selected papers", done="Pinned")
    unpin = _flag_action("pinned", False, description="Unpin selected papers", done="Unpinned")

    @admin.action(description="Retag selected papers (curator tags are kept)")
    def retag(self, request: HttpRequest, queryset: QuerySet[Paper]) -> None:
        count = papers_retag(paper_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Retagged {count} papers.")

    @admin.action(description="Fetch the featured days of selected papers again now")
    def fetch_days_again(self, request: HttpRequest, queryset: QuerySet[Paper]) -> None:
        days = sorted({day for day in queryset.values_list("featured_on", flat=True) if day})
        for day in days:
            queue_fetch(day, "hf")
        self.message_user(request, f"Queued a fetch for {len(days)} day(s).")

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "fetch-now/",
                self.admin_site.admin_view(self.fetch_now_view),
                name="digest_paper_fetch_now",
            )
        ]
        return custom + super().get_urls()

    def fetch_now_view(self, request: HttpRequest) -> HttpResponse:
        """GET shows the form; POST queues the fetch, or stores an uploaded saved response
        at once, and returns to the list."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = FetchNowForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            text = form.cleaned_data["saved_file"]
            if text is not None:
                name = str(getattr(request.FILES.get("saved_file"), "name", "") or "the uploaded file")
                try:
                    result = papers_load_text(text=text, name=name)
                except SourceError as exc:
                    form.add_error("saved_file", f"Nothing was stored. {exc}")
                else:
                    self.message_user(request, f"Stored {name}: {result.source}: {result}.", messages.SUCCESS)
                    return redirect(reverse("admin:digest_paper_changelist"))
            else:
                day, source = form.cleaned_data["day"], form.cleaned_data["source"]
                queue_fetch(day, source)
                self.message_user(
                    request,
                    f"Fetching {day.isoformat()} from {source} in the background; reload the list to see "
                    "its papers. If the source fails, nothing is stored and ADMIN_EMAILS get the reason.",
                    messages.INFO,
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
class TopicAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug", "is_active", "paper_count", "phrase_count")
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "description", "phrases")
    ordering = ("name",)
    actions = ["retag_all"]
    fields = ("name", "slug", "description", "phrases", "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj: Topic | None = None) -> tuple[str, ...]:
        # Slugs are referenced by subscribers' preferences; new topics choose theirs once.
        return ("slug",) if obj else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Topic]:
        return topics_with_paper_counts(super().get_queryset(request))

    def formfield_for_dbfield(
        self, db_field: models.Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name == "phrases":
            kwargs["widget"] = forms.Textarea(attrs={"rows": 24, "cols": 60, "spellcheck": "false"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="papers", ordering="paper_count")
    def paper_count(self, topic: Topic) -> int:
        return int(getattr(topic, "paper_count", 0))  # annotated by get_queryset

    @admin.display(description="phrases")
    def phrase_count(self, topic: Topic) -> int:
        return len(topic.phrase_list)

    def save_model(self, request: HttpRequest, obj: Topic, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and {"phrases", "name", "description", "is_active"} & set(form.changed_data):
            self.message_user(
                request,
                "Topic saved. Existing papers keep their tags until you run “Retag all papers” "
                "(new papers use the new phrases right away).",
                messages.INFO,
            )

    @admin.action(description="Retag all papers with the current topics")
    def retag_all(self, request: HttpRequest, queryset: QuerySet[Topic]) -> None:
        count = papers_retag(paper_ids=None)
        self.message_user(request, f"Retagged {count} papers.")


@admin.register(TermAlias)
class TermAliasAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Acronyms and synonyms the analyser folds together, for tagging and interests alike."""

    list_display = ("term", "expansion_list", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("term", "expansions")
    fields = ("term", "expansions", "is_active")

    @admin.display(description="expansions")
    def expansion_list(self, alias: TermAlias) -> str:
        return " · ".join(line.strip() for line in alias.expansions.splitlines() if line.strip())

    def save_model(self, request: HttpRequest, obj: TermAlias, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            "Alias saved: interests use it from the next digest on, and word counts are being recounted. "
            "Run “Retag all papers” on Topics to apply it to existing tags.",
            messages.INFO,
        )


# Runs, deliveries, previews and test sends live in their own module.
from digest import admin_digest  # noqa: E402, F401
