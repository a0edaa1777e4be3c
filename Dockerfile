# PainChain Kubernetes connector.  Build: docker build -t painchain/kubernetes-connector .
#
# Two stages. `build` turns the source into wheels (ours and every dependency); the
# runtime stage installs only those wheels, mounted for the one RUN step, so the image
# holds no source tree, build/ directory, egg-info or wheel files.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY painchain_connector ./painchain_connector
RUN pip wheel --wheel-dir /wheels .


FROM python:3.11-slim
# VERSION must match setup.py (tests/image checks the label against the installed
# package); SOURCE and REVISION are for a release build to fill in.
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/PainChain/PainChain
ARG REVISION=
# The repository declares no licence yet: SPDX's "NOASSERTION" says so honestly.
LABEL org.opencontainers.image.title="PainChain Kubernetes connector" \
      org.opencontainers.image.description="Watches Kubernetes clusters and posts significant changes to PainChain" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="NOASSERTION"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pip compiles bytecode at install time (its default): with a read-only root filesystem
# nothing can be cached later, and the precompiled image starts faster (README, "Docker").
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels painchain-kubernetes-connector \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin painchain \
 && mkdir -p /var/lib/painchain \
 && chown painchain /var/lib/painchain

ENV BACKEND_API_URL=http://painchain-app:8000/api \
    STATE_DIR=/var/lib/painchain \
    HEALTH_PORT=8080 \
    LOG_FORMAT=json
VOLUME ["/var/lib/painchain"]
EXPOSE 8080
USER 10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HEALTH_PORT') or '8080'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["painchain-connector"]
