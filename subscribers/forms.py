from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from digest.models import Topic
from digest.sources.base import normalise_arxiv_id
from subscribers.addresses import MAX_EMAIL_LENGTH, normalize_email
from subscribers.follows import clean_arxiv_categories, clean_author_names, split_authors, split_categories
from subscribers.models import DIGEST_SIZE_MAX, DIGEST_SIZE_MIN, Subscriber

INTERESTS_MAX_LENGTH = 1000
INTEREST_MAX_LENGTH = 120
INTERESTS_MAX_COUNT = 20
LIKED_PAPERS_MAX = 50


class AddressField(forms.CharField):
    """An email address, Unicode and IDN included, returned in its stored form.

    Rendered as a text input with the email keyboard: browsers' type=email
    rejects internationalised local parts that are valid.
    """

    widget = forms.TextInput(
        attrs={"inputmode": "email", "autocomplete": "email", "autocapitalize": "none", "spellcheck": "false"}
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_EMAIL_LENGTH)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str | None:
        # Checked before CharField strips whitespace, so "a@b.c\r\nBcc: x" is
        # refused outright rather than quietly cut.
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            raise ValidationError("An email address cannot contain line breaks.", code="line_break")
        return super().to_python(value)

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        return normalize_email(value) if value else value


class OptionalTextField(forms.CharField):
    """Text a reader may leave empty, at most ``default_max_length`` characters unless told otherwise."""

    default_max_length = 1000

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", self.default_max_length)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)


class ListTextField(OptionalTextField):
    """A list typed as text: shown joined by ``joiner``, cleaned to a list by ``to_list``."""

    joiner = ", "

    def prepare_value(self, value: Any) -> Any:
        return self.joiner.join(value) if isinstance(value, list | tuple) else value

    def clean(self, value: Any) -> list[str]:
        return self.to_list(super().clean(value))

    def to_list(self, text: str) -> list[str]:
        raise NotImplementedError


class InterestsField(OptionalTextField):
    """Free-text interests, one per line or comma separated; cleaned to one per line."""

    widget = forms.Textarea(attrs={"rows": 3})
    default_max_length = INTERESTS_MAX_LENGTH

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        if any(ord(char) < 32 and char not in "\r\n\t" for char in value):
            raise ValidationError("Interests cannot contain control characters.", code="control")
        items: list[str] = []
        seen: set[str] = set()
        for raw in value.replace("\r", "\n").replace(",", "\n").split("\n"):
            item = " ".join(raw.split())
            if not item or item.casefold() in seen:
                continue
            if len(item) > INTEREST_MAX_LENGTH:
                raise ValidationError(
                    f"Keep each interest under {INTEREST_MAX_LENGTH} characters.", code="item_length"
                )
            seen.add(item.casefold())
            items.append(item)
        if len(items) > INTERESTS_MAX_COUNT:
            raise ValidationError(f"List at most {INTERESTS_MAX_COUNT} interests.", code="item_count")
        return "\n".join(items)


class LikedPapersField(OptionalTextField):
    """arXiv ids or links (arxiv.org, Hugging Face), separated by spaces, commas or lines; cleaned
    to a list of bare ids without version."""

    widget = forms.Textarea(attrs={"rows": 2})
    default_max_length = 5000

    def clean(self, value: Any) -> list[str]:
        value = super().clean(value)
        ids: list[str] = []
        bad: list[str] = []
        for token in value.replace(",", " ").split():
            try:
                arxiv_id = normalise_arxiv_id(token)
            except ValueError:
                bad.append(token[:60])
                continue
            if arxiv_id not in ids:
                ids.append(arxiv_id)
        if bad:
            shown = ", ".join(f"“{token}”" for token in bad[:3]) + (" …" if len(bad) > 3 else "")
            raise ValidationError(
                f"Not an arXiv id or link: {shown}. Use ids like 2401.01234 or links like "
                "https://arxiv.org/abs/2401.01234.",
                code="invalid_id",
            )
        if len(ids) > LIKED_PAPERS_MAX:
            raise ValidationError(f"List at most {LIKED_PAPERS_MAX} papers.", code="item_count")
        return ids


class ArxivCategoriesField(ListTextField):
    """arXiv category codes separated by commas or spaces; cleaned to a list in arXiv's spelling."""

    default_max_length = 400

    def to_list(self, text: str) -> list[str]:
        return clean_arxiv_categories(split_categories(text))


class AuthorsField(ListTextField):
    """Author names, one per line; cleaned to a list."""

    widget = forms.Textarea(attrs={"rows": 2})
    default_max_length = 3000
    joiner = "\n"

    def to_list(self, text: str) -> list[str]:
        return clean_author_names(split_authors(text))


def _topic_field() -> forms.ModelMultipleChoiceField[Topic]:
    return forms.ModelMultipleChoiceField(
        queryset=Topic.objects.filter(is_active=True).order_by("name"),
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Topics",
        error_messages={
            "invalid_choice": "“%(value)s” is not one of our topics.",
            "invalid_pk_value": "“%(pk)s” is not one of our topics.",
        },
    )


class PreferencesForm(forms.Form):
    # What the form hands to the services, in the order it shows them: the reader's choices,
    # not the address or the honeypot.
    PREFERENCES: tuple[str, ...] = (
        "topics",
        "interests",
        "liked_papers",
        "arxiv_categories",
        "followed_authors",
        "frequency",
        "weekday",
    )

    interests = InterestsField(
        label="Anything more specific? (optional)",
        help_text="Papers about… one per line or separated by commas, e.g. "
        "“speculative decoding, protein folding”.",
    )
    liked_papers = LikedPapersField(
        label="Papers you liked (optional)",
        help_text="arXiv ids or links, e.g. “2401.01234”: we send more like these.",
    )
    arxiv_categories = ArxivCategoriesField(
        label="arXiv categories to follow (optional)",
        help_text="New papers in these categories join your candidates, e.g. “cs.RO, stat.ML, eess.AS”.",
    )
    followed_authors = AuthorsField(
        label="Authors to follow (optional)",
        help_text="One name per line, e.g. “Yoshua Bengio” or “Y. Bengio”: "
        "their papers always make your digest.",
    )
    frequency = forms.ChoiceField(
        choices=Subscriber.Frequency.choices,
        initial=Subscriber.Frequency.DAILY,
        widget=forms.RadioSelect,
        label="How often",
    )
    weekday = forms.TypedChoiceField(
        choices=Subscriber.Weekday.choices,
        coerce=int,
        initial=Subscriber.Weekday.MONDAY,
        label="Day for the weekly digest",
        help_text="Only used with the weekly digest.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topics"] = _topic_field()
        self.order_fields(["email", *self.PREFERENCES])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        chosen = ("topics", "interests", "arxiv_categories", "followed_authors")
        if not self.errors and not any(cleaned.get(name) for name in chosen):
            raise ValidationError(
                "Pick at least one topic, describe your interests, or follow a category or an author.",
                code="empty",
            )
        return cleaned

    def preferences(self) -> dict[str, Any]:
        """The cleaned choices, by the names the subscriber services take them."""
        return {name: self.cleaned_data[name] for name in self.PREFERENCES}


class SignupForm(PreferencesForm):
    email = AddressField(label="Your email address")
    # Honeypot: hidden from people (and screen readers); bots fill every field.
    website = forms.CharField(
        required=False,
        label="Leave this field empty",
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    @property
    def is_bot(self) -> bool:
        return bool(self.data.get("website"))


class ManageForm(PreferencesForm):
    PREFERENCES = (*PreferencesForm.PREFERENCES, "digest_size", "show_trending", "with_abstracts")

    digest_size = forms.IntegerField(
        min_value=DIGEST_SIZE_MIN,
        max_value=DIGEST_SIZE_MAX,
        label="Papers per digest",
        help_text=f"Between {DIGEST_SIZE_MIN} and {DIGEST_SIZE_MAX}.",
    )
    show_trending = forms.BooleanField(
        required=False,
        label="Also show the day's most upvoted papers I would otherwise miss",
        help_text="In a separate “Also trending” section, at most three.",
    )
    with_abstracts = forms.BooleanField(
        required=False,
        label="With abstracts",
        help_text="Put each paper's full abstract in the email. Without, you get a one-line TL;DR "
        "and the abstracts are one tap away on the web page of your digest.",
    )

    @classmethod
    def for_subscriber(cls, subscriber: Subscriber, data: Mapping[str, Any] | None = None) -> ManageForm:
        initial = {
            "topics": list(subscriber.topics.values_list("slug", flat=True)),
            "interests": subscriber.interests,
            "liked_papers": " ".join(subscriber.liked_papers or []),
            "show_trending": subscriber.show_trending,
            "arxiv_categories": subscriber.arxiv_categories,
            "followed_authors": subscriber.followed_authors,
            "frequency": subscriber.frequency,
            "weekday": subscriber.weekday,
            "digest_size": subscriber.digest_size,
            "with_abstracts": subscriber.with_abstracts,
        }
        return cls(data=data, initial=initial)


class DeleteForm(forms.Form):
    confirm = forms.BooleanField(
        label="Yes, delete my subscription and everything stored about me. This cannot be undone.",
        error_messages={"required": "Tick the box to confirm that you want everything deleted."},
    )
