# Confide: one server process (uvicorn). Run several behind a load balancer,
# all pointing at the same PostgreSQL and Redis; see docker-compose.yml for
# the settings and for how to generate the keys.
#
#   docker build -t confide .
#
# The image defaults to CONFIDE_ENV=production: it refuses to start unless
# CONFIDE_MASTER_KEYS, CONFIDE_INDEX_KEY and CONFIDE_SIGNING_KEY_FILE are set.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid, so orchestrators can check runAsNonRoot and a host
# can `chown 10001` the signing key file it mounts.
RUN groupadd --system --gid 10001 confide \
    && useradd --system --uid 10001 --gid confide --no-create-home \
        --home-dir /var/lib/confide --shell /usr/sbin/nologin confide \
    && install -d -o confide -g confide -m 0700 /var/lib/confide

WORKDIR /opt/confide
COPY pyproject.toml README.md ./
COPY app ./app
COPY alembic ./alembic
RUN pip install . && rm -rf /opt/confide/build

ENV CONFIDE_ENV=production \
    CONFIDE_DATA_DIR=/var/lib/confide

USER 10001:10001
WORKDIR /var/lib/confide
EXPOSE 8000

# curl is not in the slim image: ask /healthz with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# `confide serve` applies pending migrations, then serves.
CMD ["confide", "serve", "--host", "0.0.0.0", "--port", "8000"]
