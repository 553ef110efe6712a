"""Writing a chunk's outcomes: only over rows the task still holds."""

import pytest

from digest.models import Delivery, DigestRun
from digest.services.outcomes import ChunkResult, accepted_update, deliveries_record_outcomes
from digest.services.runs import digest_run_start
from digest.services.send import claim
from tests.digest.builders import EDITION
from tests.digest.sending_support import make_readers

pytestmark = pytest.mark.django_db


def test_outcomes_are_written_only_where_the_claim_token_still_matches():
    make_readers(4)
    run = digest_run_start(edition=EDITION, fetch=False)
    ids = list(Delivery.objects.filter(run=run).order_by("id").values_list("id", flat=True))
    assert claim(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="mine") == 4
    # Another task took the last two over after this one's lease ran out.
    Delivery.objects.filter(id__in=ids[2:]).update(claim_token="theirs")
    subscriber_of = dict(Delivery.objects.values_list("id", "subscriber_id"))
    updates = {i: accepted_update(message_id=f"m{i}", subject="Today", paper_ids=[1]) for i in ids}
    result = ChunkResult()
    deliveries_record_outcomes(
        run=run, updates=updates, subscriber_of=subscriber_of, result=result, claim_token="mine"
    )
    assert result.sent == 2
    rows = dict(Delivery.objects.values_list("id", "status"))
    assert [rows[i] for i in ids] == [Delivery.Status.SENT] * 2 + [Delivery.Status.SENDING] * 2
    assert set(Delivery.objects.filter(id__in=ids[2:]).values_list("claim_token", flat=True)) == {"theirs"}
    assert DigestRun.objects.get(id=run.id).sent_count == 2


def test_uncertain_rows_are_counted_on_the_run():
    make_readers(2)
    run = digest_run_start(edition=EDITION, fetch=False)
    ids = list(Delivery.objects.filter(run=run).values_list("id", flat=True))
    claim(run_id=run.id, id_from=min(ids), id_to=max(ids), claim_token="t")
    updates = {i: {"status": Delivery.Status.UNCERTAIN, "error": "the ESP may have it"} for i in ids}
    result = ChunkResult()
    deliveries_record_outcomes(run=run, updates=updates, subscriber_of={}, result=result, claim_token="t")
    assert result.uncertain == 2
    assert DigestRun.objects.get(id=run.id).uncertain_count == 2
