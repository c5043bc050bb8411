# The forecasting service: `forecast serve` by default, `forecast train` as a job
# (see docker-compose.yml).
#
# CPU image (the default): torch's CPU wheel, a few hundred MB instead of several GB.
#
#     docker build -t forecast:latest .
#
# CUDA image: a CUDA base and the torch index of the same CUDA version. Any base works that
# has Debian/Ubuntu apt; Python >= 3.11 is installed from apt when the base lacks it
# (Ubuntu 24.04 brings 3.12). docker-compose.gpu.yml passes these two arguments:
#
#     docker build -t forecast:cuda \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#
# The host needs the NVIDIA driver and the NVIDIA Container Toolkit; run with `--gpus all`
# (or the compose override) and FORECAST_DEVICE=cuda.
#
# The image needs no root, no capability and no writable root filesystem: the server writes
# nothing, the trainer only the registry and /tmp. Run it locked down, as docker-compose.yml
# does, and published on the loopback interface behind a TLS proxy:
#
#     docker run --read-only --tmpfs /tmp:rw,noexec,nosuid,nodev,size=64m --cap-drop ALL \
#       --security-opt no-new-privileges:true --memory 2g --cpus 2 --pids-limit 512 \
#       -p 127.0.0.1:8000:8000 -v "$PWD/models:/models:ro" forecast:latest

ARG BASE_IMAGE=python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------
# builder: a virtual environment with torch from TORCH_INDEX and the project from its wheel.
FROM ${BASE_IMAGE} AS builder
ARG TORCH_INDEX

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive

# python:*-slim has Python; a bare CUDA/Ubuntu base gets it (and venv) from apt.
RUN if ! python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from TORCH_INDEX, at exactly the version pinned in pyproject.toml
# (tests/test_containers.py checks that the two agree). The CPU or CUDA build installed here
# then satisfies the project's `torch==` pin, so the second step keeps it and does not pull
# PyPI's default (CUDA) build; the check after it fails the build if it ever did.
RUN pip install --upgrade pip \
    && pip install --index-url "${TORCH_INDEX}" "torch==2.13.0" \
    && pip freeze | grep -i '^torch==' > /tmp/torch.before

WORKDIR /src
COPY pyproject.toml README.md ./
COPY forecast ./forecast
COPY api ./api
RUN pip install . \
    && pip freeze | grep -i '^torch==' | diff /tmp/torch.before - \
    && python -c "import forecast, api, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# ---------------------------------------------------------------------------------------------
# runtime: the same base, the venv, a non-root user; no compilers, no pip cache, no sources.
FROM ${BASE_IMAGE} AS runtime

ENV DEBIAN_FRONTEND=noninteractive
RUN if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 forecast \
    && useradd --system --uid 10001 --gid forecast --home-dir /home/forecast --create-home \
        --shell /usr/sbin/nologin forecast \
    && mkdir -p /models \
    && chown forecast:forecast /models \
    # No set-uid or set-gid programs (su, mount, passwd...): nothing in the image can gain
    # privileges, even when run without no-new-privileges.
    && find / -xdev -type f -perm /6000 -exec chmod a-s {} +

COPY --from=builder /opt/venv /opt/venv

# Caches (torch's, pip's if ever run) go to /tmp, the one writable place with --read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    FORECAST_REGISTRY=/models

WORKDIR /home/forecast
USER forecast:forecast

# The registry: trained versions live here (read-only for the API in docker-compose.yml).
VOLUME /models
EXPOSE 8000

# Liveness only (readiness, /readyz, also waits for models to load). No curl in the image:
# urlopen raises on a refused connection or a non-2xx status, so the exit code says it all.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# 0.0.0.0 of the container's own network namespace: who can reach it is decided where the port
# is published (-p 127.0.0.1:8000:8000, or docker-compose.yml's FORECAST_BIND).
CMD ["forecast", "serve", "--host", "0.0.0.0", "--port", "8000"]
