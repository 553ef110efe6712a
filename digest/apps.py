from django.apps import AppConfig


class DigestConfig(AppConfig):
    name = "digest"
    verbose_name = "Papers and digests"

    def ready(self):
        from digest import checks, signals  # noqa: F401  (registers system checks and receivers)
