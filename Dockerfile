# One image for every service of compose.yaml: dependencies installed at build time, a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 1000 relay
WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay_lang relay_lang
COPY relay_workers relay_workers
COPY examples examples
# gcc builds Relay's array type (relay_lang/_array.c), then leaves the image.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . && python -c "import relay_workers.celery, relay_lang._array" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
USER relay
ENV RELAY_CACHE_DIR=/home/relay/.cache/relay PYTHONUNBUFFERED=1
CMD ["celery", "-A", "relay_workers", "worker", "-Q", "relay.*"]
