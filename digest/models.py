"""Papers scraped from Hugging Face and arXiv, the topics they are tagged with, and curator state."""

from django.db import models

PHRASES_HELP = (
    "One phrase per line, matched against title, abstract and Hugging Face keywords; case, hyphens and "
    "plurals do not matter. Prefix ~ for a weak phrase (supporting evidence only), - for counter-evidence, "
    "use * at the start or end as a wildcard (e.g. quantiz*), and # for a comment."
)


class Topic(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="Fixed identifier used in preferences.")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    phrases = models.TextField(blank=True, help_text=PHRASES_HELP)
    is_active = models.BooleanField(default=True, help_text="Inactive topics are neither tagged nor offered.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def phrase_list(self) -> list[str]:
        return [line.strip() for line in self.phrases.splitlines() if line.strip()]


class PaperLinks:
    """Where a paper can be read, for anything with an ``arxiv_id``."""

    arxiv_id: str

    @property
    def hf_url(self) -> str:
        return f"https://huggingface.co/papers/{self.arxiv_id}"

    @property
    def abs_url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.arxiv_id}"


class Paper(PaperLinks, models.Model):
    """One arXiv paper. Text fields hold scraped plain text and are always escaped on output."""

    arxiv_id = models.CharField("arXiv id", max_length=32, unique=True, help_text="Without version suffix.")
    title = models.TextField()
    abstract = models.TextField(blank=True)
    authors = models.JSONField(default=list, blank=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="First published on arXiv.")
    featured_on = models.DateField(
        null=True, blank=True, db_index=True, help_text="Day it was featured on Hugging Face Daily Papers."
    )
    upvotes = models.PositiveIntegerField(default=0)
    num_comments = models.PositiveIntegerField(default=0)
    github_repo = models.URLField("GitHub repo", max_length=500, blank=True)
    github_stars = models.PositiveIntegerField(null=True, blank=True)
    project_page = models.URLField(max_length=500, blank=True)
    thumbnail_url = models.URLField(max_length=500, blank=True)
    ai_keywords = models.JSONField("HF keywords", default=list, blank=True)
    ai_summary = models.TextField("HF summary", blank=True)
    sources = models.JSONField(
        default=list, blank=True, help_text='Where it was seen: "hf", "hf-page", "arxiv".'
    )
    categories = models.JSONField(default=list, blank=True, help_text="arXiv categories, primary first.")

    # Curator fields: never touched by a re-scrape.
    hidden = models.BooleanField(default=False, help_text="Hidden papers never appear in a digest.")
    pinned = models.BooleanField(default=False, help_text="Pinned papers lead the digests they qualify for.")
    note = models.TextField(blank=True, help_text="Curator's note.")

    topics = models.ManyToManyField(Topic, through="PaperTopic", related_name="papers", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-featured_on", "-upvotes", "arxiv_id"]
        indexes = [models.Index(fields=["featured_on", "upvotes"], name="paper_day_upvotes")]

    def __str__(self) -> str:
        return f"{self.arxiv_id}: {self.title[:80]}"


class PaperTopic(models.Model):
    """A paper's tag. Rows a curator set are never changed by automatic tagging.

    A curator row with score 0 records that the curator removed the topic, so
    retagging does not bring it back; readers only count rows with score > 0.
    """

    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="paper_topics")
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="paper_topics")
    score = models.FloatField(default=1.0, help_text="0 to 1; 0 on a curator row means 'not this topic'.")
    set_by_curator = models.BooleanField(default=False)
    evidence = models.JSONField(
        default=list,
        db_default=models.Value([], output_field=models.JSONField()),
        blank=True,
        help_text="The phrases that earned an automatic tag, strongest first.",
    )

    class Meta:
        ordering = ["-score"]
        constraints = [models.UniqueConstraint(fields=["paper", "topic"], name="unique_paper_topic")]
        verbose_name = "paper topic"

    def __str__(self) -> str:
        return f"{self.paper_id} → {self.topic_id} ({self.score:.2f})"


class DigestRun(models.Model):
    """One night's run: what it found, whom it was for, and how sending went."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"  # fetching papers
        PLANNING = "planning", "Planning"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    edition = models.DateField(db_index=True, help_text="The day the digest is for.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    papers_count = models.PositiveIntegerField(default=0, help_text="Papers fetched or updated by this run.")
    due_count = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    empty_count = models.PositiveIntegerField(
        default=0, help_text="Skipped: nothing passed the relevance gate."
    )
    failed_count = models.PositiveIntegerField(default=0)
    uncertain_count = models.PositiveIntegerField(
        default=0,
        help_text="Handed to the ESP by a worker that died before the answer, and not sent again "
        "(DIGEST_UNCERTAIN=skip): the reader may or may not have it.",
    )
    errors = models.JSONField(default=list, blank=True)
    # Unfinished deliveries when recovery last looked; no change since means stalled.
    remaining_at_check = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Planning's progress marker: when its last batch of rows was written. A run
    # in planning whose marker has gone quiet lost its planner and is resumed.
    planned_at = models.DateTimeField(null=True, blank=True, editable=False)
    plan_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    # A run for one reader only (run_digest --only); resuming its planning keeps to them.
    only_email = models.EmailField(blank=True, editable=False)

    class Meta:
        ordering = ["-started_at"]
        # Each of these acts beyond viewing rows: a preview shows a reader's
        # interests and digest, a test send mails it, a run mails everyone.
        permissions = [
            ("preview_digest", "Can preview a reader's digest"),
            ("send_test_digest", "Can send a test copy of a reader's digest"),
            ("start_digestrun", "Can start a digest run by hand"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} for {self.edition} ({self.status})"


class Delivery(models.Model):
    """One digest for one subscriber and edition; the unique constraint is what
    makes a second or concurrent run unable to send twice."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        SENDING = "sending", "Sending"
        INFLIGHT = "inflight", "At the ESP (awaiting its answer)"
        SENT = "sent", "Sent"
        EMPTY = "empty", "Skipped (nothing matched)"
        CANCELLED = "cancelled", "Cancelled (no longer subscribed)"
        FAILED = "failed", "Failed"
        UNCERTAIN = "uncertain", "Uncertain (the ESP may have it)"

    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="deliveries"
    )
    edition = models.DateField()
    run = models.ForeignKey(
        DigestRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLANNED)
    claim_token = models.CharField(max_length=64, blank=True)
    # The lease: the sending task renews claimed_at while it works; rows whose
    # lease ran out (DIGEST_CLAIM_TIMEOUT) belong to a task that is gone.
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    esp_message_id = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    paper_ids = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-edition", "id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "edition"], name="one_delivery_per_subscriber_edition"
            )
        ]
        indexes = [models.Index(fields=["edition", "status"], name="delivery_edition_status")]
        permissions = [("resend_delivery", "Can re-send failed deliveries")]

    def __str__(self) -> str:
        return f"{self.edition} → subscriber {self.subscriber_id} ({self.status})"


class Feedback(models.Model):
    """A reader's 👍 (+1) or 👎 (-1) on a paper; it shapes their future ranking."""

    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="feedback"
    )
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="feedback")
    vote = models.SmallIntegerField(choices=[(1, "👍"), (-1, "👎")])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscriber", "paper"], name="one_vote_per_paper")]
        verbose_name_plural = "feedback"

    def __str__(self) -> str:
        return f"{self.subscriber_id} {'👍' if self.vote > 0 else '👎'} {self.paper_id}"


class TermAlias(models.Model):
    """An acronym or synonym and the wordings that mean the same, for tagging and interest matching.

    The text analyser reads the term and every expansion as one word, so "RL" in
    a paper meets a reader's "reinforcement learning" and the other way round.
    """

    term = models.CharField(
        max_length=100, unique=True, help_text='The short form, e.g. "RLHF" or "KV cache".'
    )
    expansions = models.TextField(
        help_text='One wording per line, e.g. "reinforcement learning from human feedback". Case, hyphens '
        "and plurals do not matter; # starts a comment."
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["term"]
        verbose_name = "term alias"
        verbose_name_plural = "term aliases"

    def __str__(self) -> str:
        return self.term


class TermStat(models.Model):
    """How many stored papers contain a term (document frequency), kept current by ingest."""

    term = models.CharField(max_length=100, unique=True)
    papers = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.term}: {self.papers}"


class CorpusStat(models.Model):
    """Totals over the stored papers that BM25F needs beside document frequencies (one row)."""

    papers = models.PositiveIntegerField(default=0)
    # Total analysed words per field, for average field lengths.
    title_words = models.PositiveBigIntegerField(default=0)
    summary_words = models.PositiveBigIntegerField(default=0)
    keywords_words = models.PositiveBigIntegerField(default=0)
    abstract_words = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.papers} papers"


class ReaderModel(models.Model):
    """A reader's learned taste: logistic regression over TF-IDF features, fitted on their votes.

    Stored compactly as the fitted vocabulary with its IDF weights and
    coefficients, so ranking needs no pickled estimator.
    """

    subscriber = models.OneToOneField(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="reader_model"
    )
    vocabulary = models.JSONField(default=list, help_text="Analysed terms, in coefficient order.")
    idf = models.JSONField(default=list)
    coefficients = models.JSONField(default=list)
    intercept = models.FloatField(default=0.0)
    positives = models.PositiveIntegerField(default=0)
    negatives = models.PositiveIntegerField(default=0)
    fitted_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"model for {self.subscriber_id} ({self.positives}+/{self.negatives}-)"


class DeliveryRollup(models.Model):
    """Counts of deliveries per edition and status, kept after old rows are purged."""

    edition = models.DateField()
    status = models.CharField(max_length=16, choices=Delivery.Status.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-edition", "status"]
        constraints = [
            models.UniqueConstraint(fields=["edition", "status"], name="one_rollup_per_edition_status")
        ]

    def __str__(self) -> str:
        return f"{self.edition} {self.status}: {self.count}"


class SubscriberDeliveryRollup(models.Model):
    """A reader's purged delivery history: digests per month and status."""

    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="delivery_rollups"
    )
    month = models.DateField(help_text="First day of the month the editions fall in.")
    status = models.CharField(max_length=16, choices=Delivery.Status.choices)
    count = models.PositiveIntegerField(default=0)
    first_edition = models.DateField()
    last_edition = models.DateField()

    class Meta:
        ordering = ["-month", "status"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "month", "status"], name="one_rollup_per_subscriber_month_status"
            )
        ]
        verbose_name = "older delivery"
        verbose_name_plural = "older deliveries (purged, counted per month)"

    def __str__(self) -> str:
        return f"{self.subscriber_id} {self.month:%Y-%m} {self.status}: {self.count}"
