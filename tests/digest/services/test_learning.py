from datetime import timedelta

import pytest

from digest.compose import DigestComposer
from digest.models import Feedback, ReaderModel
from digest.selectors import load_affinities, readers_for_deliveries
from digest.services.feedback import feedback_record
from digest.services.learning import reader_model_fit
from tests.digest.builders import EDITION, YESTERDAY, make_paper, make_reader

pytestmark = pytest.mark.django_db

GRAPH = "Message passing on molecular graphs with equivariant graph networks for molecules."
LANGUAGE = "A chat assistant that answers questions with retrieved passages and citations."


def archive():
    """Older papers the reader voted on: graph papers liked, chat papers not."""
    older = YESTERDAY - timedelta(days=20)
    liked = [make_paper(100 + n, topics={"science-health": 0.6}, day=older, title=f"Molecule graphs {n}",
                        abstract=GRAPH) for n in range(5)]  # fmt: skip
    disliked = [make_paper(200 + n, topics={"science-health": 0.6}, day=older, title=f"Chat helpers {n}",
                           abstract=LANGUAGE) for n in range(3)]  # fmt: skip
    return liked, disliked


def test_votes_fit_a_model_that_lifts_papers_like_the_liked_ones(django_capture_on_commit_callbacks):
    liked, disliked = archive()
    # Tonight: two papers with the same tag; the chat one is more upvoted.
    chat = make_paper(
        1, topics={"science-health": 0.7}, title="Chat helpers for labs", abstract=LANGUAGE, upvotes=90
    )
    graph = make_paper(
        2, topics={"science-health": 0.7}, title="Graphs of molecules", abstract=GRAPH, upvotes=1
    )
    reader = make_reader("ada@example.org", ["science-health"])

    def order():
        composer = DigestComposer.for_edition(EDITION)
        readers, _ = readers_for_deliveries(edition=EDITION, rows=[(0, reader.pk, 0)])
        return [item.paper_id for item in composer.ranked_for(readers[0])]

    assert order() == [chat.pk, graph.pk]  # equal relevance: upvotes break the tie
    with django_capture_on_commit_callbacks(execute=True):
        for paper in liked:
            feedback_record(subscriber=reader, paper=paper, vote=1)
        for paper in disliked[:2]:
            feedback_record(subscriber=reader, paper=paper, vote=-1)
    assert not ReaderModel.objects.filter(subscriber=reader).exists()  # two votes down are not enough
    with django_capture_on_commit_callbacks(execute=True):
        feedback_record(subscriber=reader, paper=disliked[2], vote=-1)  # the refit is queued on commit
    model = ReaderModel.objects.get(subscriber=reader)
    assert (model.positives, model.negatives) == (5, 3)
    assert order() == [graph.pk, chat.pk]
    learned = load_affinities([reader.pk])[reader.pk].learned
    assert learned is not None and len(learned.terms) == len(learned.coefficients) == len(learned.idf)


def test_liked_papers_count_as_examples_without_votes_down():
    liked, _ = archive()
    reader = make_reader("bob@example.org", ["science-health"], liked_papers=[p.arxiv_id for p in liked])
    assert reader_model_fit(subscriber_id=reader.pk)
    assert ReaderModel.objects.get(subscriber=reader).positives == 5


def test_too_few_examples_fit_nothing_and_drop_an_old_model():
    liked, disliked = archive()
    reader = make_reader("eve@example.org", ["science-health"])
    for paper in liked + disliked:
        Feedback.objects.create(subscriber=reader, paper=paper, vote=1 if paper in liked else -1)
    assert reader_model_fit(subscriber_id=reader.pk)
    Feedback.objects.filter(subscriber=reader, vote=1).delete()
    assert not reader_model_fit(subscriber_id=reader.pk)
    assert not ReaderModel.objects.filter(subscriber=reader).exists()
