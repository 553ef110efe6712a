# An exact Python release on an exact Debian release: rebuilding the image months
# later gives the same interpreter. Bump both on purpose.
FROM python:3.11.14-slim-bookworm

# MALLOC_ARENA_MAX: a worker's sender threads would each get a malloc arena of their
# own; two arenas keep the digests they build from spreading memory across dozens.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2

WORKDIR /app
# Runtime packages only; test tools live in requirements-dev.txt and stay out of the image.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings to import; the key is a placeholder used only for this build step.
# STATIC_HASHED writes the manifest of content-hashed names the production settings serve.
RUN DJANGO_SECRET_KEY=collectstatic-only STATIC_HASHED=true python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 paperboy \
    && mkdir -p /app/var && chown -R paperboy /app/var

USER paperboy
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
