"""Keep derived state in step with the alias map and readers' votes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from digest.models import Feedback, TermAlias
from digest.tagging.analysis import aliases_changed


@receiver([post_save, post_delete], sender=TermAlias)
def term_alias_changed(sender: type, instance: TermAlias, **kwargs: Any) -> None:
    """Every process drops its analyser; the archive's word counts are recounted after commit."""
    from digest.tasks import corpus_stats_rebuild_task

    aliases_changed()
    transaction.on_commit(lambda: corpus_stats_rebuild_task.delay())


@receiver([post_save, post_delete], sender=Feedback)
def vote_changed(sender: type, instance: Feedback, **kwargs: Any) -> None:
    """A reader's learned model is refitted once the vote is committed, never while a digest is ranked."""
    from digest.tasks import reader_model_fit_task

    subscriber_id = instance.subscriber_id
    transaction.on_commit(lambda: reader_model_fit_task.delay(subscriber_id))
