"""
Settings for Paperboy, read from typed environment variables.

Two modes, picked by whether DATABASE_URL is set:

* embedded (nothing configured): SQLite in var/, Celery tasks run in-process,
  every outgoing email is written to var/outbox/ as an .eml file. The demo and
  a fresh checkout run this way with no services at all.
* production (DATABASE_URL set): PostgreSQL, Redis as Celery broker and cache,
  an anymail ESP backend, a required secret key and DEBUG off by default.

Every variable is listed in README.md and .env.example.
"""

import ipaddress
import re
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config.logging import logging_config
from config.sentry import sentry_init

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file next to manage.py is read for convenience; real environment
# variables always win over it.
if env.bool("DJANGO_READ_DOT_ENV", default=True) and (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATABASE_URL = env.str("DATABASE_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED = not DATABASE_URL
DEPLOYMENT_MODE = "embedded" if EMBEDDED else "production"

DEBUG = env.bool("DJANGO_DEBUG", default=EMBEDDED)

if EMBEDDED:
    # Only ever used on a developer's own machine with no configuration.
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="embedded-mode-insecure-key-do-not-deploy")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set in production mode (DATABASE_URL is set). "
            'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )

SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")
_site = urlsplit(SITE_URL)
SERVED_OVER_HTTPS = _site.scheme == "https"

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]", _site.hostname or "localhost"],
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[f"{_site.scheme}://{_site.netloc}"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "anymail",
    "django_celery_beat",
    "digest",
    "subscribers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.csp.SiteCSPMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Storage -----------------------------------------------------------------

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

if EMBEDDED:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets the site read while the nightly run writes; IMMEDIATE
                # makes writers queue for the lock instead of failing mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
else:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "paperboy",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Static files --------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves content-hashed names (site.3f2a9c.css) that browsers may cache
# for ever; that needs the manifest `collectstatic` writes (the Docker image runs
# it). The embedded mode serves the files as they are, so the demo and a fresh
# checkout need no build step.
STATIC_HASHED = env.bool("STATIC_HASHED", default=not EMBEDDED)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_HASHED
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}

# --- Internationalisation ------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Email -----------------------------------------------------------------------

OUTBOX_DIR = Path(env.str("OUTBOX_DIR", default=str(VAR_DIR / "outbox")))
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="mail.backends.OutboxEmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Paperboy <digest@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [("Admin", address) for address in env.list("ADMIN_EMAILS", default=[])]
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Used by Django's SMTP backend, e.g. mailpit in docker-compose.
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)

# Every ANYMAIL_* variable becomes a key of the ANYMAIL dict, so any ESP that
# anymail supports is configured without code changes, for example
# ANYMAIL_POSTMARK_SERVER_TOKEN or ANYMAIL_WEBHOOK_SECRET.
ANYMAIL = {
    key.removeprefix("ANYMAIL_"): value for key, value in env.ENVIRON.items() if key.startswith("ANYMAIL_")
}
# anymail's HTTP backends ignore EMAIL_TIMEOUT and would wait 30 s for a hung
# ESP on every attempt; they read this instead. Values from the environment are
# strings, which requests refuses as a timeout.
if "REQUESTS_TIMEOUT" in ANYMAIL:
    ANYMAIL["REQUESTS_TIMEOUT"] = float(ANYMAIL["REQUESTS_TIMEOUT"])
ANYMAIL_REQUESTS_TIMEOUT = EMAIL_TIMEOUT
# The one ESP whose tracking webhook is mounted at /anymail/<esp>/tracking/; by
# default the ESP of EMAIL_BACKEND (anymail.backends.<esp>.EmailBackend). Every
# other ESP's webhook answers 404.
_backend_module = EMAIL_BACKEND.rsplit(".", 1)[0]
_backend_esp = (
    _backend_module.removeprefix("anymail.backends.") if _backend_module.startswith("anymail.") else ""
)
ESP_TRACKING_WEBHOOK = env.str("ESP_TRACKING_WEBHOOK", default=_backend_esp)

# --- Celery --------------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
# Without a broker the tasks run in the calling process, so the embedded mode
# and the demo need no worker.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
# The soft limit tells a send task to stop, write what it sent and release the
# rest before the hard limit kills it.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=CELERY_TASK_TIME_LIMIT - 30)
if not 0 < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT must be above 0 and below CELERY_TASK_TIME_LIMIT")
# A task that is not acknowledged within this window is handed to another
# worker; tasks are kept far shorter than this.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Beat reads its schedule from the database, where the admin can edit it
# (config/schedule.py seeds it). CELERY_BEAT_SCHEDULE stays empty on purpose:
# beat would write its entries over the admin's edits at every start.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# --- Security --------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if SERVED_OVER_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # Load balancers and compose probe /healthz, and Prometheus scrapes /metrics, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)

ADMIN_URL = env.str("ADMIN_URL", default="admin/").strip("/") + "/"

# Content-Security-Policy. The public pages have no JavaScript and no inline
# styles: everything comes from our own static files. The admin's scripts are
# static files too (its JSON <script> blocks are data, which CSP does not run).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        # The signup page frames its sample digest (our own page, sandboxed).
        "frame-src": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
# Added under ADMIN_URL only (config/csp.py): our admin templates use style
# attributes, and the digest preview shows an email (inline styles by nature,
# paper thumbnails from other hosts) in a sandboxed srcdoc frame, which inherits
# the page's policy.
ADMIN_CONTENT_SECURITY_POLICY_UPDATE = {"style-src": [UNSAFE_INLINE], "img-src": ["https:"]}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Product ---------------------------------------------------------------------

PRODUCT_NAME = env.str("PRODUCT_NAME", default="Paperboy")
SCRAPER_USER_AGENT = env.str(
    "SCRAPER_USER_AGENT", default=f"{PRODUCT_NAME}/1.0 (+{SITE_URL}; personalised ML paper digest)"
)
# arXiv categories the arXiv source always asks for, comma-separated; the categories
# readers follow are added, up to ARXIV_MAX_CATEGORIES in all.
ARXIV_CATEGORIES = env.list("ARXIV_CATEGORIES", default=["cs.CL", "cs.LG", "cs.CV", "cs.AI"])
ARXIV_MAX_CATEGORIES = env.int("ARXIV_MAX_CATEGORIES", default=40)
# Sources the nightly run fetches, in order: hf (the API, the papers page as its
# fallback), hf-page, arxiv. One failing source no longer stops the others,
# unless DIGEST_SOURCES_REQUIRE_ALL asks for all or nothing.
DIGEST_SOURCES = env.list("DIGEST_SOURCES", default=["hf", "arxiv"])
if not DIGEST_SOURCES or set(DIGEST_SOURCES) - {"hf", "hf-page", "arxiv"}:
    raise ImproperlyConfigured(f"DIGEST_SOURCES must list hf, hf-page and/or arxiv, not {DIGEST_SOURCES!r}")
DIGEST_SOURCES_REQUIRE_ALL = env.bool("DIGEST_SOURCES_REQUIRE_ALL", default=False)

# --- Subscribers -----------------------------------------------------------------

# Signups per client IP, in django-ratelimit's "count/period" form (s, m, h, d),
# counted in the Django cache. Empty turns the limit off, e.g. for a load test.
SIGNUP_RATE_LIMIT = env.str("SIGNUP_RATE_LIMIT", default="20/h")
# If the cache is down, let signups through (with a logged warning) rather than
# turn every reader away; subscribers/ratelimits.py also covers connection errors.
RATELIMIT_FAIL_OPEN = True

# Where the client address comes from (subscribers/clientip.py). 0: REMOTE_ADDR
# only, any forwarding header is ignored. N: the app sits behind N reverse
# proxies that each append to TRUSTED_PROXY_HEADER; the client is the entry the
# outermost one wrote. TRUSTED_PROXIES (addresses or CIDR networks) additionally
# requires REMOTE_ADDR to be one of them before the header is read.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
TRUSTED_PROXY_HEADER = env.str("TRUSTED_PROXY_HEADER", default="HTTP_X_FORWARDED_FOR")
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more")
if TRUSTED_PROXIES and not TRUSTED_PROXY_COUNT:
    TRUSTED_PROXY_COUNT = 1
for _proxy in TRUSTED_PROXIES:
    try:
        ip_network(_proxy, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an address or network") from _exc

# Transactional email (confirmation, preference and data links) is written to the
# OutgoingEmail table in the same transaction as the change that calls for it and
# sent by a worker, so a broker outage only delays it.
OUTGOING_EMAIL_DRAIN_EVERY = env.int("OUTGOING_EMAIL_DRAIN_EVERY", default=60)
OUTGOING_EMAIL_MAX_ATTEMPTS = env.int("OUTGOING_EMAIL_MAX_ATTEMPTS", default=8)

# /healthz names failing services; their error details only for a request that
# carries this token (X-Healthz-Token header or ?token=). Empty: never.
HEALTHZ_TOKEN = env.str("HEALTHZ_TOKEN", default="")

# --- Digest ------------------------------------------------------------------------

# When the nightly run starts, "HH:MM" in UTC: the default of the "nightly-digest"
# periodic task when it is first seeded; afterwards the time is edited in the admin.
DIGEST_SEND_TIME = env.str("DIGEST_SEND_TIME", default="06:00")
if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", DIGEST_SEND_TIME):
    raise ImproperlyConfigured(f"DIGEST_SEND_TIME must be HH:MM in UTC, e.g. 06:00, not {DIGEST_SEND_TIME!r}")
DIGEST_MAX_ITEMS = env.int("DIGEST_MAX_ITEMS", default=8)
DIGEST_MAX_ITEMS_LIMIT = 15
DIGEST_RELEVANCE_GATE = env.float("DIGEST_RELEVANCE_GATE", default=0.3)
# Upvotes break near-ties in relevance; they never outweigh a clearly better match.
DIGEST_TREND_WEIGHT = env.float("DIGEST_TREND_WEIGHT", default=0.05)
# When nothing passes a reader's relevance gate: send no email (true), or send the
# day's most upvoted papers instead (false).
DIGEST_SKIP_EMPTY = env.bool("DIGEST_SKIP_EMPTY", default=True)
# Paper thumbnails in the email; off by default, since many readers block remote images.
DIGEST_IMAGES = env.bool("DIGEST_IMAGES", default=False)
DIGEST_CHUNK_SIZE = env.int("DIGEST_CHUNK_SIZE", default=2000)
# Send readers who share a digest in one ESP call with per-recipient links
# (digest/services/batch.py): auto (when the backend supports it), on, off.
DIGEST_ESP_BATCH = env.str("DIGEST_ESP_BATCH", default="auto").lower()
if DIGEST_ESP_BATCH not in ("auto", "on", "off"):
    raise ImproperlyConfigured(f"DIGEST_ESP_BATCH must be auto, on or off, not {DIGEST_ESP_BATCH!r}")
DIGEST_ESP_BATCH_SIZE = env.int("DIGEST_ESP_BATCH_SIZE", default=500)
DIGEST_SEND_ATTEMPTS = env.int("DIGEST_SEND_ATTEMPTS", default=3)
DIGEST_SEND_BACKOFF = env.float("DIGEST_SEND_BACKOFF", default=1.0)
DIGEST_MAX_ATTEMPTS = env.int("DIGEST_MAX_ATTEMPTS", default=5)
# A send task's lease on its rows: renewed every third of this while it works;
# rows whose lease ran out belong to a task that is gone and may be taken over.
DIGEST_CLAIM_TIMEOUT = env.float("DIGEST_CLAIM_TIMEOUT", default=60)
if DIGEST_CLAIM_TIMEOUT <= 0:
    raise ImproperlyConfigured("DIGEST_CLAIM_TIMEOUT must be a positive number of seconds")
# The digest's ESP calls go through mail/transport.py's lean session (one write
# per call, no per-call request preparation); False sends them through plain requests.
MAIL_LEAN_HTTP = env.bool("MAIL_LEAN_HTTP", default=True)
# ESP calls a worker process keeps in flight at once (one connection each).
DIGEST_SEND_CONCURRENCY = env.int("DIGEST_SEND_CONCURRENCY", default=32)
if not 1 <= DIGEST_SEND_CONCURRENCY <= 256:
    raise ImproperlyConfigured("DIGEST_SEND_CONCURRENCY must be between 1 and 256")
# Messages per second for all workers together (one limit in Redis); 0 = unlimited.
DIGEST_ESP_RATE = env.float("DIGEST_ESP_RATE", default=0.0)
if DIGEST_ESP_RATE < 0:
    raise ImproperlyConfigured("DIGEST_ESP_RATE must be 0 (unlimited) or a positive rate")
# A message whose worker died while the ESP had it, that neither the send journal
# nor the ESP can account for: "skip" leaves it uncertain (at most once),
# "resend" sends it again (at least once).
DIGEST_UNCERTAIN = env.str("DIGEST_UNCERTAIN", default="skip").lower()
if DIGEST_UNCERTAIN not in ("skip", "resend"):
    raise ImproperlyConfigured(f"DIGEST_UNCERTAIN must be skip or resend, not {DIGEST_UNCERTAIN!r}")
DIGEST_RUN_MAX_SECONDS = env.int("DIGEST_RUN_MAX_SECONDS", default=6 * 3600)
DIGEST_RECOVER_EVERY = env.int("DIGEST_RECOVER_EVERY", default=120)
SENDER_POSTAL_ADDRESS = env.str("SENDER_POSTAL_ADDRESS", default="")
# Addresses the admin's "Send test" may mail besides staff users' own.
DIGEST_TEST_SEND_ALLOWED = env.list("DIGEST_TEST_SEND_ALLOWED", default=[])
# Delivery rows older than this are counted into rollups and deleted, nightly. Never
# under 30 days: the 14-day never-send-twice window and the admin's 30-day chart need them.
DIGEST_DELIVERY_RETENTION_DAYS = env.int("DIGEST_DELIVERY_RETENTION_DAYS", default=180)
if DIGEST_DELIVERY_RETENTION_DAYS < 30:
    raise ImproperlyConfigured(
        f"DIGEST_DELIVERY_RETENTION_DAYS must be at least 30, not {DIGEST_DELIVERY_RETENTION_DAYS}"
    )

# --- Operations: metrics, logs, error tracking -------------------------------------

# /metrics (Prometheus text format) answers a request with this bearer token, or
# from one of these addresses or networks (REMOTE_ADDR, e.g. 10.0.0.0/8). With
# neither set the endpoint does not exist (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {_network!r} is not an address or network") from exc
# Runs and deliveries of the last N days are counted by status.
METRICS_WINDOW_DAYS = env.int("METRICS_WINDOW_DAYS", default=7)

LOG_FORMAT = env.str("LOG_FORMAT", default="plain").lower()
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
try:
    LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc

SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default=DEPLOYMENT_MODE)
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
try:
    SENTRY_ENABLED = sentry_init(
        dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
