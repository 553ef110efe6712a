"""Hooks anymail's tracking webhooks (bounces, complaints, ...) up to suppression."""

from anymail.signals import AnymailTrackingEvent, tracking
from django.dispatch import receiver

from subscribers.services import tracking_event_record


@receiver(tracking, dispatch_uid="subscribers.tracking_event")
def handle_tracking_event(
    sender: object, event: AnymailTrackingEvent, esp_name: str, **kwargs: object
) -> None:
    tracking_event_record(event=event, esp_name=esp_name)
