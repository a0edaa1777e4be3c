# PainChain Kubernetes connector.  Build: docker build -t painchain/kubernetes-connector .
#
# Two stages. `build` installs the dependencies and then the connector's wheel into a
# virtual environment at /opt/painchain; the runtime stage copies only that
# environment, so the image holds no source tree, build/ directory, egg-info or wheel.
# (Not `RUN --mount=from=build` to install in the runtime stage: podman 4.3's buildah
# leaves that mount empty when the build stage comes from its layer cache.)

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Bytecode is compiled here, at the path it runs from: on a read-only root filesystem
# nothing compiled later can be kept. --no-compile is the measured alternative
# (tests/image/measure.py; README "Container image").
ARG PIP_BYTECODE=--compile
WORKDIR /src
# The dependencies first, in a layer rebuilt only when setup.py changes: installed through
# an empty package of the same name and requirements, which is then removed.
COPY pyproject.toml setup.py ./
RUN python -m venv --without-pip /opt/painchain \
 && mkdir painchain_connector && touch README.md \
 && pip --python /opt/painchain/bin/python install ${PIP_BYTECODE} . \
 && pip --python /opt/painchain/bin/python uninstall --yes painchain-kubernetes-connector \
 && rm -r /src
COPY pyproject.toml setup.py README.md ./
COPY painchain_connector ./painchain_connector
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip --python /opt/painchain/bin/python install --no-deps ${PIP_BYTECODE} /wheels/*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin painchain \
 && mkdir -p /var/lib/painchain \
 && chown painchain /var/lib/painchain
COPY --from=build /opt/painchain /opt/painchain
ENV PATH=/opt/painchain/bin:$PATH

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
