# syntax=docker/dockerfile:1
#
# One image for all five services of dra-driver-hostdev. ENTRYPOINT is `python -m`, so the
# container's command (k8s `args`, compose `command`) names the service module:
#
#   docker run --rm IMAGE hostdev_gateway
#
# Targets:
#   runtime (default, the last stage)  the five services and their libraries, nothing else.
#   devkit                             runtime plus the test kit (kubelet simulator, Kubernetes
#                                      API emulator); compose.yaml builds this one.
#
# The image runs as an unprivileged user (uid/gid 10001). In Kubernetes the pods that must
# write root-owned host directories override that: the preparer runs as root and privileged
# (sysfs writes for vfio binding and mdevs), the gateway and the CDI writer run as uid 0 with
# every capability dropped (they only create files in root-owned kubelet/CDI directories).
# See k8s/base/*.yaml.

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8
# The workspace packages that make up the image (each service pulls in its libraries).
ARG SERVICES="hostdev-gateway hostdev-discovery hostdev-allocator hostdev-preparer hostdev-cdi-writer"

# `COPY --from` cannot expand build arguments, so the uv image gets a stage name.
FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------------
# builder: install the service packages from uv.lock into /opt/venv, non-editable, so the venv
# is self-contained and the source tree stays behind.
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
# uv checks the lock against every workspace member, so all member pyproject files must be
# present; .dockerignore keeps tests, caches and the local .venv out of the context.
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
ARG SERVICES
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable \
        $(for package in ${SERVICES}; do printf -- '--package %s ' "${package}"; done)

# builder-devkit: the same venv plus the test kit, for the compose demo only.
FROM builder AS builder-devkit
ARG SERVICES
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package hostdev-testing \
        $(for package in ${SERVICES}; do printf -- '--package %s ' "${package}"; done)

# ---------------------------------------------------------------------------------------------
# base: the slim interpreter (same image as the builder, so the venv's python link resolves),
# the service user, and no compilers, no uv, no source tree.
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 hostdev \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin hostdev
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title="dra-driver-hostdev" \
      org.opencontainers.image.description="DRA driver and device plugin for host devices: gateway, discovery, allocator, preparer, cdi-writer"
WORKDIR /
USER 10001:10001
ENTRYPOINT ["python", "-m"]

FROM base AS devkit
COPY --from=builder-devkit /opt/venv /opt/venv

# The default target: keep it last.
FROM base AS runtime
COPY --from=builder /opt/venv /opt/venv
