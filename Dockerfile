# syntax=docker/dockerfile:1
#
# The gpu-rdma-injector image: `gpu-rdma-injector serve` as a non-root user on a read-only root
# filesystem (see charts/gpu-rdma-injector).
#
#   docker build -t gpu-rdma-injector:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# The builder stage builds the project's wheel and installs it, with the dependencies pinned in
# requirements.lock, into a virtualenv; the runtime stage is the same base image plus that
# virtualenv and nothing else: no pip cache, no sources, no build tools.

# Pinned to a full patch version of Python and to the Debian release. To pin by digest as well,
# append @sha256:<index digest> from `docker buildx imagetools inspect <image>`.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer, so a source change does not reinstall them.
# --only-binary: every dependency must come as a wheel, so no compiler is ever needed.
COPY requirements.lock ./
RUN pip install --only-binary=:all: --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY webhook/ webhook/
# --no-deps: the project's own wheel may not pull anything that requirements.lock does not pin;
# pip check fails the build if the lock misses a dependency.
RUN pip wheel --no-deps --wheel-dir /tmp/dist . \
    && pip install --no-deps /tmp/dist/*.whl \
    && pip check

FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gpu-rdma-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that keeps the Multus networks annotation and the SR-IOV RDMA resource of GPU pods together" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# HOME points at /tmp, the only writable path in the pod (an emptyDir); the image's root
# filesystem is read-only there and UID 65532 has no passwd entry.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

COPY --from=builder /opt/venv /opt/venv

# The same UID/GID as the chart's securityContext (runAsUser/runAsGroup 65532).
USER 65532:65532

EXPOSE 8443

ENTRYPOINT ["gpu-rdma-injector"]
CMD ["serve"]
