"""Run a night's digest in this process: fetch, plan, compose and send, with a progress bar."""

import uuid
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from digest.management.arguments import as_date, iso_date
from digest.models import DigestRun
from digest.services.plan import pending_ranges
from digest.services.preview import digest_dry_run
from digest.services.runs import digest_run_finish_if_done, digest_run_start
from digest.services.send import deliveries_send_chunk_blocking


class Command(BaseCommand):
    help = (
        "Run the nightly digest for one edition in this process (no worker needed): fetch yesterday's "
        "papers, plan one delivery per due subscriber, then compose and send them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--date", type=iso_date, help="Edition date, YYYY-MM-DD (default: today, UTC).")
        parser.add_argument("--dry-run", action="store_true", help="Compose but send and store nothing.")
        parser.add_argument("--only", metavar="EMAIL", help="Run for this one subscriber.")
        parser.add_argument(
            "--no-fetch", action="store_true", help="Use the papers already stored instead of fetching."
        )
        parser.add_argument(
            "--source",
            choices=("hf", "hf-page", "arxiv"),
            default=None,
            help="Fetch only this source (default: every source in DIGEST_SOURCES).",
        )

    def handle(self, *args, **options):
        edition = as_date(options["date"]) or timezone.now().date()
        if options["dry_run"]:
            return self._dry_run(edition, options["only"])
        run = digest_run_start(
            edition=edition,
            fetch=not options["no_fetch"],
            source=options["source"],
            only_email=options["only"],
        )
        if run.status == DigestRun.Status.FAILED:
            raise CommandError(f"Run {run.pk} failed and sent nothing: {'; '.join(run.errors)}")
        if options["only"] and not run.due_count:
            self.stdout.write(
                f"{options['only']} has no digest due on {edition} (not active, or already planned)."
            )
        ranges = pending_ranges(run=run)
        claim_token = f"cli-{uuid.uuid4().hex}"
        with tqdm(total=run.due_count, unit="digest", disable=not run.due_count, file=self.stderr) as bar:
            for first, last in ranges:
                result = deliveries_send_chunk_blocking(
                    run_id=run.pk, id_from=first, id_to=last, claim_token=claim_token
                )
                bar.update(result.sent + result.empty + result.failed + result.cancelled)
        digest_run_finish_if_done(run_id=run.pk)
        run.refresh_from_db()
        self.stdout.write(
            self.style.SUCCESS(
                f"Run {run.pk} for {edition}: {run.papers_count} papers fetched, {run.due_count} due, "
                f"{run.sent_count} sent, {run.empty_count} skipped as empty, {run.failed_count} failed."
            )
        )

    def _dry_run(self, edition: date, only: str | None) -> None:
        report = digest_dry_run(edition=edition, only_email=only)
        for line in report.samples:
            self.stdout.write(line)
        self.stdout.write(
            f"Dry run for {edition}: {report.due} due, {report.would_send} would get a digest, "
            f"{report.empty} would be skipped as empty, {report.groups} distinct digests. Nothing was sent."
        )
