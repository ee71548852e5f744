# imaging-exporter container image.
#   docker build -t imaging-exporter:0.1.0 .
#   docker run -p 9847:9847 imaging-exporter:0.1.0
# Host mode in a container needs the host's root mounted read-only (see
# deploy/kubernetes/host-mode.yaml); cloud mode needs only its credentials, passed
# at run time (never baked into the image).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# Every cloud extra: one image serves host mode and every cloud mode.
RUN /opt/venv/bin/pip install --no-cache-dir ".[all]"

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="imaging-exporter" \
      org.opencontainers.image.description="Prometheus exporter that warns before a cloud server image or backup fails" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
# A fixed numeric UID, so Kubernetes' runAsNonRoot can check it; the state
# directory is the only place the exporter writes.
RUN groupadd --system --gid 10001 imaging-exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin imaging-exporter \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/imaging-exporter
USER 10001:10001
EXPOSE 9847
# Any HTTP answer (401 with basic auth included) means the server is up. With
# TLS or another port in --web.listen-address, override or disable this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.error, urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:9847/', timeout=4)\nexcept urllib.error.HTTPError:\n    pass\n"]
ENTRYPOINT ["imaging-exporter"]
CMD ["--web.listen-address=:9847", "--log.level=info"]
