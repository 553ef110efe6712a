from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "subscribers"
    verbose_name = "Subscribers"

    def ready(self) -> None:
        from subscribers import receivers  # noqa: F401  (connects the ESP tracking signal)
