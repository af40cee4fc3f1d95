# One image for every service of compose.yaml: dependencies installed at build time, a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 1000 relay
WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay_lang relay_lang
COPY relay_workers relay_workers
COPY config config
COPY examples examples
RUN pip install --no-cache-dir . && python -c "import relay_workers.celery"
USER relay
ENV RELAY_CACHE_DIR=/home/relay/.cache/relay PYTHONUNBUFFERED=1
CMD ["celery", "-A", "relay_workers", "worker", "-Q", "relay.*"]
