# PainChain Kubernetes connector. Build: docker build -t painchain/kubernetes-connector .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY setup.py README.md ./
COPY painchain_connector ./painchain_connector
RUN pip install . \
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
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["painchain-connector"]
