import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from subscribers.models import Subscriber

pytestmark = pytest.mark.django_db


def test_adds_a_confirmed_subscriber_without_email(capsys):
    call_command(
        "add_subscriber", "Demo@Example.org", "--topics", "reasoning,agents", "--interests", "tool use",
        "--frequency", "weekly", "--weekday", "3", "--confirmed",
    )  # fmt: skip
    subscriber = Subscriber.objects.get()
    assert subscriber.email == "Demo@example.org"
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.confirmed_at is not None
    assert sorted(subscriber.topics.values_list("slug", flat=True)) == ["agents", "reasoning"]
    assert (subscriber.interests, subscriber.frequency, subscriber.weekday) == ("tool use", "weekly", 3)
    assert mail.outbox == []
    assert "Added Demo@example.org" in capsys.readouterr().out


def test_without_confirmed_sends_the_confirmation_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("add_subscriber", "new@example.org", "--topics", "code")
    assert Subscriber.objects.get().status == Subscriber.Status.PENDING
    assert len(mail.outbox) == 1 and "/confirm/" in mail.outbox[0].body


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x@example.org", "--topics", "reasoning,astrology"], "Unknown topic(s): astrology"),
        (["not-an-email", "--topics", "reasoning"], "Invalid email"),
        (["x@example.org"], "at least one topic"),
        (["x@example.org", "--interests", "q" * 121], "Invalid --interests"),
        (["x@example.org", "--categories", "cs.RO,cs.NOPE"], "Invalid --categories: Not an arXiv category"),
        (
            ["x@example.org", "--authors", "Ada " + "L" * 300],
            "Invalid --authors: Keep each author name under",
        ),
    ],
)
def test_bad_arguments_fail_clearly_and_change_nothing(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("add_subscriber", *args)
    assert not Subscriber.objects.exists()


def test_existing_address_is_refused():
    call_command("add_subscriber", "dup@example.org", "--topics", "code", "--confirmed")
    with pytest.raises(CommandError, match="already a subscriber"):
        call_command("add_subscriber", "DUP@example.org", "--topics", "video", "--confirmed")
    assert Subscriber.objects.count() == 1


def test_adds_a_subscriber_who_follows_categories_and_authors():
    call_command(
        "add_subscriber", "f@example.org", "--categories", "cs.ro, stat.ML",
        "--authors", "Grace Hopper; Y. Bengio", "--confirmed",
    )  # fmt: skip
    subscriber = Subscriber.objects.get()
    assert subscriber.arxiv_categories == ["cs.RO", "stat.ML"]
    assert subscriber.followed_authors == ["Grace Hopper", "Y. Bengio"]
