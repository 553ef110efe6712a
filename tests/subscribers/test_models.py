import pytest
from django.db import IntegrityError, transaction

from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def test_email_is_unique_without_regard_to_case():
    SubscriberFactory(email="Case@example.org")
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriberFactory(email="case@EXAMPLE.org")
    assert Subscriber.objects.count() == 1


def test_interests_are_one_per_line():
    subscriber = SubscriberFactory(interests="diffusion\n\n  world models \n")
    assert subscriber.interest_list == ["diffusion", "world models"]


def test_digest_size_and_weekday_are_checked_by_the_database():
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriberFactory(digest_size=16)
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriberFactory(weekday=7)
