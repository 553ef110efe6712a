from django.db import IntegrityError, transaction

from digest.feedback import FeedbackTarget
from digest.models import Feedback, Paper
from subscribers.models import Subscriber

VOTES = {"up": 1, "down": -1}


class FeedbackRejected(Exception):
    pass


def feedback_target_resolve(*, target: FeedbackTarget) -> tuple[Subscriber, Paper]:
    """The subscriber and paper a token points at, if the link is still valid."""
    subscriber = Subscriber.objects.filter(id=target.subscriber_id).first()
    if subscriber is None or subscriber.token_version != target.token_version:
        raise FeedbackRejected("This link belongs to a subscription that no longer exists.")
    paper = Paper.objects.filter(id=target.paper_id).first()
    if paper is None:
        raise FeedbackRejected("This paper is no longer in our archive.")
    return subscriber, paper


def feedback_record(*, subscriber: Subscriber, paper: Paper, vote: int) -> Feedback:
    """Record or change a reader's vote on a paper; voting twice keeps one vote."""
    if vote not in (1, -1):
        raise FeedbackRejected("A vote is 👍 or 👎.")
    try:
        with transaction.atomic():
            feedback, _ = Feedback.objects.update_or_create(
                subscriber=subscriber, paper=paper, defaults={"vote": vote}
            )
    except IntegrityError:
        # Two clicks at once: the other request created the row first.
        feedback = Feedback.objects.get(subscriber=subscriber, paper=paper)
        if feedback.vote != vote:
            feedback.vote = vote
            feedback.save(update_fields=["vote", "updated_at"])
    return feedback
