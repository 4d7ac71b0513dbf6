# syntax=docker/dockerfile:1
#
# The gpu-rdma-injector image: `gpu-rdma-injector serve` as a non-root user on a read-only root
# filesystem (see charts/gpu-rdma-injector).
#
#   docker build -t gpu-rdma-injector:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# The builder stage builds the project's wheel and installs it, with the dependencies pinned in
# requirements.lock, into a virtualenv; the runtime stage is the same base image plus bytecode for
# its standard library and that virtualenv, nothing else: no pip cache, no sources, no build tools.
# scripts/image-check builds this file as it is and runs the image the way the chart does (see the
# README's "Container image").

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
RUN pip install --no-compile --only-binary=:all: --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY webhook/ webhook/
# --no-deps: the project's own wheel may not pull anything that requirements.lock does not pin;
# pip check fails the build if the lock misses a dependency.
RUN pip wheel --no-deps --wheel-dir /tmp/dist . \
    && pip install --no-compile --no-deps /tmp/dist/*.whl \
    && pip check

# What the runtime needs of the venv, and nothing more:
# - no pip and no setuptools (build tools; setuptools also hooks every start through a .pth file);
# - no kubernetes.aio, the client's asyncio twin (66 MB with its bytecode), which nothing imports:
#   the webhook uses the synchronous client (tests/test_dockerfile.py checks that webhook/ never
#   names it);
# - bytecode for every module, compiled once here: the root filesystem is read-only at run time,
#   so Python could not cache it and would compile each module at every start (measured with the
#   stand-in base: ready after 3.5 s instead of 1.5 s). unchecked-hash: the image never changes,
#   and the bytecode stays valid whatever a build or a registry does to file times.
RUN pip uninstall --yes pip setuptools \
    && rm -rf /opt/venv/lib/python3.*/site-packages/kubernetes/aio \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

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

# python.org's slim images ship the standard library without bytecode; on a read-only root every
# start would compile each standard module it imports (measured with the stand-in base: 1.2 s
# more to ready). A no-op on a base whose standard library is already compiled.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -x '/(site-packages|test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip)/' \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"

# HOME and the development certificates (`serve` without certificate files) go to /tmp, the only
# writable path in the pod (an emptyDir); the image's root filesystem is read-only there and the
# process runs as UID 65532 (or, on OpenShift, an arbitrary UID in group 0) without a passwd entry.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GPU_RDMA_INJECTOR_DEV_CERT_DIR=/tmp/certs/dev

COPY --from=builder /opt/venv /opt/venv

# The same UID/GID as the chart's securityContext (runAsUser/runAsGroup 65532).
USER 65532:65532

EXPOSE 8443

ENTRYPOINT ["gpu-rdma-injector"]
CMD ["serve"]
