from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DigestConfig(AppConfig):
    name = "digest"
    verbose_name = "Papers and digests"

    def ready(self) -> None:
        from config.schedule import seed_after_migrate
        from digest import checks, signals  # noqa: F401  (registers system checks and receivers)

        # Seeds the nightly run and the housekeeping tasks for Celery beat (config/schedule.py).
        post_migrate.connect(seed_after_migrate, sender=self, dispatch_uid="paperboy-periodic-tasks")
