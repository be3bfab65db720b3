# syntax=docker/dockerfile:1
# One multi-stage Dockerfile for sagascope:
#   build      installs the package and its dependencies into /opt/venv
#   service    (default) the three gRPC services: `python -m sagascope.<name>`, non-root
#   load       service + locust, for the `load` compose profile
#   elk-setup  the one-shot job importing ES templates and Kibana saved objects
#   otelcol    the pinned contrib collector binary on busybox, so compose can
#              health-check it (the upstream image has no shell or HTTP client)
# Versions come from .env through compose build args. BASE_IMAGE is the Python image
# the python stages start from: users keep the upstream one; `make k8s-images` passes
# a Debian-packaged one built here (scripts/k8s/build_images.sh), as no registry is reachable.
ARG PYTHON_VERSION=3.12
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim
ARG OTELCOL_VERSION=0.158.0
ARG BUSYBOX_VERSION=1.37.0

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so code edits do not re-download them: exactly the pins and hashes of
# requirements/service.lock (`make lock`), without the dev tools or the embedded MongoDB.
COPY requirements/service.lock ./
RUN pip install --require-hashes -r service.lock
COPY pyproject.toml README.md* ./
COPY protos ./protos
COPY sagascope ./sagascope
RUN pip install --no-deps .

FROM ${BASE_IMAGE} AS base
RUN groupadd --system --gid 10001 sagascope \
 && useradd --system --uid 10001 --gid sagascope --home-dir /app --shell /usr/sbin/nologin sagascope \
 && mkdir -p /app/var && chown -R sagascope:sagascope /app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app

FROM base AS load
ARG LOCUST_VERSION=2.42.2
RUN pip install --no-cache-dir "locust==${LOCUST_VERSION}"
COPY --chown=sagascope:sagascope tests/load /app/tests/load
USER 10001:10001
EXPOSE 8089
ENTRYPOINT ["locust"]

FROM ${BASE_IMAGE} AS elk-setup
COPY observability/elk/requirements.txt /elk/requirements.txt
# A venv as in the service stages, so any Python base works (Debian's Python marks its own
# site-packages externally managed and has no pip).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /elk/requirements.txt \
 && useradd --system --uid 10001 --home-dir /elk --shell /usr/sbin/nologin elksetup
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY observability/elk /elk
USER 10001
ENTRYPOINT ["python", "/elk/setup.py"]

FROM otel/opentelemetry-collector-contrib:${OTELCOL_VERSION} AS otelcol-upstream
FROM busybox:${BUSYBOX_VERSION} AS otelcol
COPY --from=otelcol-upstream /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=otelcol-upstream /otelcol-contrib /otelcol-contrib
USER 10001:10001
EXPOSE 4317 4318 8888 13133
ENTRYPOINT ["/otelcol-contrib"]
CMD ["--config", "/etc/otelcol/config.yml"]

# Last stage = the default target: the services.
FROM base AS service
USER 10001:10001
EXPOSE 50051 50052 50053 8081 9101 9102 9103
ENTRYPOINT ["python", "-m"]
CMD ["sagascope.order"]
