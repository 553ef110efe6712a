from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils import timezone

from subscribers.addresses import validate_email_address
from subscribers.follows import validate_arxiv_categories, validate_author_names

DIGEST_SIZE_MIN = 1
DIGEST_SIZE_MAX = 15
DIGEST_SIZE_DEFAULT = 8


class Subscriber(models.Model):
    """One reader of the digest and the proof that they asked for it.

    ``email`` is stored normalised (see ``subscribers.addresses.normalize_email``):
    the domain lower-cased in its ASCII (IDNA) form, the local part as typed.
    Uniqueness ignores case.

    ``interests`` is free text stored one interest per line; the forms also
    accept commas and split on them before saving.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmation"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        SUPPRESSED = "suppressed", "Suppressed"

    class Frequency(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    email = models.CharField(max_length=254, validators=[validate_email_address])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    topics = models.ManyToManyField("digest.Topic", blank=True, related_name="subscribers")
    interests = models.TextField(blank=True, help_text="One interest per line.")
    # db_default too, so rows written outside the ORM (COPY, raw SQL) start with empty lists.
    arxiv_categories = models.JSONField(
        default=list,
        db_default=Value([], output_field=models.JSONField()),
        blank=True,
        validators=[validate_arxiv_categories],
        help_text='arXiv categories followed, as arXiv writes them, e.g. ["cs.RO", "stat.ML"].',
    )
    followed_authors = models.JSONField(
        default=list,
        db_default=Value([], output_field=models.JSONField()),
        blank=True,
        validators=[validate_author_names],
        help_text="Authors followed by name; their papers always make the digest.",
    )
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.DAILY)
    weekday = models.PositiveSmallIntegerField(
        choices=Weekday.choices, default=Weekday.MONDAY, help_text="Day of the digest when weekly."
    )
    digest_size = models.PositiveSmallIntegerField(
        default=DIGEST_SIZE_DEFAULT,
        validators=[MinValueValidator(DIGEST_SIZE_MIN), MaxValueValidator(DIGEST_SIZE_MAX)],
        help_text="Number of papers in each digest.",
    )
    # Every signed link carries this number; bumping it revokes all of them.
    token_version = models.PositiveIntegerField(default=1)

    # Consent proof: when, from where and with what the address was given and confirmed.
    signup_at = models.DateTimeField(default=timezone.now)
    signup_ip = models.GenericIPAddressField(null=True, blank=True)
    signup_user_agent = models.CharField(max_length=512, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirm_ip = models.GenericIPAddressField(null=True, blank=True)
    confirm_user_agent = models.CharField(max_length=512, blank=True)

    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribe_reason = models.CharField(max_length=64, blank=True)
    suppressed_at = models.DateTimeField(null=True, blank=True)
    suppression_reason = models.CharField(max_length=200, blank=True)
    # Start of the current or latest pause, and when it ended: a reader back from
    # a short pause gets one catch-up digest of what they missed.
    paused_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    last_digest_at = models.DateTimeField(null=True, blank=True)
    soft_bounce_count = models.PositiveSmallIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="subscriber_email_ci_unique"),
            models.CheckConstraint(
                condition=models.Q(weekday__gte=0, weekday__lte=6), name="subscriber_weekday_range"
            ),
            models.CheckConstraint(
                condition=models.Q(digest_size__gte=DIGEST_SIZE_MIN, digest_size__lte=DIGEST_SIZE_MAX),
                name="subscriber_digest_size_range",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="subscriber_status_idx")]

    def __str__(self) -> str:
        return self.email

    @property
    def interest_list(self) -> list[str]:
        return [line.strip() for line in self.interests.splitlines() if line.strip()]

    @property
    def display_email(self) -> str:
        from subscribers.addresses import display_email

        return display_email(self.email)


class SuppressionEvent(models.Model):
    """One ESP event that counted towards suppressing an address.

    ``event_id`` is unique, so an ESP that retries a webhook never has the
    same bounce or complaint counted twice.
    """

    event_id = models.CharField(max_length=255, unique=True)
    email = models.CharField(max_length=254)
    event_type = models.CharField(max_length=32)
    reason = models.CharField(max_length=200, blank=True)
    esp = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    subscriber = models.ForeignKey(
        Subscriber, null=True, blank=True, on_delete=models.SET_NULL, related_name="suppression_events"
    )

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.email}"


class DeletionRecord(models.Model):
    """Anonymous count of erased subscribers per day; holds no personal data."""

    class Reason(models.TextChoices):
        REQUEST = "request", "Deleted on request"
        UNCONFIRMED = "unconfirmed", "Never confirmed"

    date = models.DateField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-date"]
        constraints = [models.UniqueConstraint(fields=["date", "reason"], name="deletion_record_unique")]

    def __str__(self) -> str:
        return f"{self.date} {self.reason}: {self.count}"
