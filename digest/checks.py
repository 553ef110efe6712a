from django.conf import settings
from django.core.checks import Error, Warning, register

OUTBOX_BACKEND = "mail.backends.OutboxEmailBackend"


@register("paperboy", deploy=True)
def check_production_email_backend(app_configs, **kwargs):
    """Production mode must hand mail to an ESP, not to the local outbox folder."""
    if settings.EMBEDDED or settings.EMAIL_BACKEND != OUTBOX_BACKEND:
        return []
    return [
        Warning(
            "Production mode is writing every email to OUTBOX_DIR instead of sending it.",
            hint="Set EMAIL_BACKEND to an anymail backend, e.g. anymail.backends.postmark.EmailBackend, "
            "and its ANYMAIL_* credentials.",
            id="paperboy.W001",
        )
    ]


@register("paperboy", deploy=True)
def check_webhook_secret(app_configs, **kwargs):
    """Bounce and complaint webhooks suppress addresses, so they must be authenticated."""
    if settings.EMBEDDED or settings.ANYMAIL.get("WEBHOOK_SECRET"):
        return []
    return [
        Warning(
            "ANYMAIL_WEBHOOK_SECRET is not set, so anyone could post fake bounces to /anymail/.",
            hint="Set ANYMAIL_WEBHOOK_SECRET=user:password and use it in the ESP's webhook URL.",
            id="paperboy.W002",
        )
    ]


@register("paperboy")
def check_arxiv_categories(app_configs, **kwargs):
    """A misspelt category would silently fetch nothing from arXiv every night."""
    from digest.sources.arxiv_categories import CATEGORIES

    unknown = [code for code in settings.ARXIV_CATEGORIES if code not in CATEGORIES]
    if not unknown:
        return []
    return [
        Error(
            f"ARXIV_CATEGORIES lists codes arXiv does not have: {', '.join(unknown)}.",
            hint="Use codes as arXiv writes them, e.g. cs.CL,cs.LG,stat.ML (arxiv.org/category_taxonomy).",
            id="paperboy.E001",
        )
    ]
