import factory
from django.utils import timezone

from digest.models import Topic
from subscribers.models import Subscriber


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"reader{n}@example.org")
    status = Subscriber.Status.ACTIVE
    interests = "speculative decoding"
    signup_ip = "192.0.2.10"
    signup_user_agent = "Mozilla/5.0 (test)"
    confirmed_at = factory.LazyAttribute(
        lambda o: timezone.now() if o.status not in (Subscriber.Status.PENDING,) else None
    )

    @factory.post_generation
    def topics(self, create, extracted, **kwargs):
        if create and extracted:
            self.topics.set(Topic.objects.filter(slug__in=extracted))
