# syntax=docker/dockerfile:1
# dydx-exporter: the exporter (default) and the embedded indexer simulator (`simulate`), one small image.
#   docker build -t dydx-exporter:0.1.0 .
#   docker run --rm -p 9741:9741 dydx-exporter:0.1.0                      # against dYdX mainnet
#   docker run --rm -p 3003:3003 dydx-exporter:0.1.0 simulate --web.listen-address 0.0.0.0:3003

# The Python base. The suite (tests/deploy) builds on a Debian bookworm base with Debian's Python 3.11,
# bootstrapped locally, because no registry is reachable there: `make image IMAGE_BUILD_ARGS=--build-arg ...`.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a self-contained virtualenv with the package and its pinned dependencies --------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/dydx-exporter
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/dydx-exporter/bin/pip install --no-deps --upgrade pip setuptools wheel \
 && /opt/dydx-exporter/bin/pip install . \
 && /opt/dydx-exporter/bin/pip uninstall --yes pip setuptools wheel

# --- runtime: the virtualenv only, no compilers, no pip, a non-root user --------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="dydx-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the dYdX v4 Indexer WebSocket feed" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 dydx \
 && useradd --system --uid 10001 --gid dydx --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dydx
COPY --from=build /opt/dydx-exporter /opt/dydx-exporter
# No DYDX_EXPORTER_* here: the environment beats --config.file, so an option set in the image would
# silently override the same option in a user's config file (the Helm chart's `config`). Logs are JSON
# anyway: --log.format auto means JSON when stderr is not a terminal.
ENV PATH=/opt/dydx-exporter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9741/healthz
USER 10001:10001
EXPOSE 9741
# The slim image has no curl: the standard library does the probe. Any non-2xx answer or a connection
# error raises, and an uncaught exception exits 1 (unhealthy). Point HEALTHCHECK_URL elsewhere for the
# simulator or a non-default --web.listen-address.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dydx-exporter"]
