"""Per-reader models learned from 👍/👎 votes and liked papers ("more like these").

Once a reader has MIN_POSITIVES papers they like (votes up plus liked papers
in the archive) and MIN_NEGATIVES votes down, a logistic regression is fitted
on TF-IDF features of those papers' title, HF summary and abstract, read by the
shared analyser. Recent papers the reader never voted on join as weak
negatives (weight BACKGROUND_WEIGHT), so the model learns what sets the liked
papers apart from an ordinary day. A reader with MIN_POSITIVES liked papers
needs no votes down: the background papers are the contrast.

The fit runs in a task queued when a vote is saved or the liked papers change,
never while digests are ranked. The model is stored as its vocabulary, IDF
weights, coefficients and intercept (``ReaderModel``); ranking applies it with
a sparse dot product (``digest.ranking.LearnedModel``).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from digest.models import Feedback, Paper, ReaderModel
from digest.ranking import LearnedModel
from digest.tagging.analysis import current_analyzer
from subscribers.models import Subscriber

MIN_POSITIVES = 5
MIN_NEGATIVES = 3
BACKGROUND_PAPERS = 40
BACKGROUND_WEIGHT = 0.3
MAX_TERMS = 1500
REGULARISATION_C = 4.0


def _identity(terms: list[str]) -> list[str]:
    return terms


def reader_model_fit(*, subscriber_id: int) -> bool:
    """Fit (or drop) the reader's model from their current votes; True when a model was stored."""
    # Imported here: only the fitting task needs scikit-learn, not every worker that ranks.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        return False
    votes = dict(Feedback.objects.filter(subscriber_id=subscriber_id).values_list("paper_id", "vote"))
    liked = set(
        Paper.objects.filter(arxiv_id__in=list(subscriber.liked_papers or [])).values_list("pk", flat=True)
    )
    negatives = {paper_id for paper_id, vote in votes.items() if vote < 0}
    positives = ({paper_id for paper_id, vote in votes.items() if vote > 0} | liked) - negatives
    if len(positives) < MIN_POSITIVES or (len(negatives) < MIN_NEGATIVES and len(liked) < MIN_POSITIVES):
        ReaderModel.objects.filter(subscriber_id=subscriber_id).delete()
        return False
    background = list(
        Paper.objects.exclude(pk__in=positives | negatives)
        .order_by("-featured_on", "-pk")
        .values_list("pk", flat=True)[:BACKGROUND_PAPERS]
    )
    order = [*positives, *negatives, *background]
    papers = {p.pk: p for p in Paper.objects.filter(pk__in=order).only("title", "ai_summary", "abstract")}
    analyzer = current_analyzer()
    documents, labels, weights = [], [], []
    for paper_id in order:
        paper = papers.get(paper_id)
        if paper is None:
            continue
        terms = (
            analyzer.terms(paper.title) + analyzer.terms(paper.ai_summary) + analyzer.terms(paper.abstract)
        )
        documents.append(terms)
        labels.append(1 if paper_id in positives else 0)
        weights.append(BACKGROUND_WEIGHT if paper_id in background else 1.0)
    vectorizer = TfidfVectorizer(
        analyzer=_identity, sublinear_tf=True, norm="l2", max_features=MAX_TERMS, min_df=1
    )
    features = vectorizer.fit_transform(documents)
    classifier = LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=500)
    classifier.fit(features, labels, sample_weight=weights)
    with transaction.atomic():
        ReaderModel.objects.update_or_create(
            subscriber_id=subscriber_id,
            defaults={
                "vocabulary": [str(term) for term in vectorizer.get_feature_names_out()],
                "idf": [round(float(value), 5) for value in vectorizer.idf_],
                "coefficients": [round(float(value), 5) for value in classifier.coef_[0]],
                "intercept": float(classifier.intercept_[0]),
                "positives": len(positives),
                "negatives": len(negatives),
            },
        )
    return True


def learned_models(*, subscriber_ids: list[int] | QuerySet[Any, Any]) -> dict[int, LearnedModel]:
    """The stored models of these readers, ready for ranking (one query)."""
    out = {}
    for row in ReaderModel.objects.filter(subscriber_id__in=subscriber_ids):
        out[row.subscriber_id] = LearnedModel(
            key=(row.pk, row.fitted_at.timestamp()),
            terms=tuple(row.vocabulary),
            idf=tuple(row.idf),
            coefficients=tuple(row.coefficients),
            intercept=row.intercept,
        )
    return out
