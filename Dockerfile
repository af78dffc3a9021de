# One image for the worker and the sink (docker-compose.yml picks the command).
# Installed editable so the package finds schemas/ and infra/clickhouse/ next to it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY sinks ./sinks
COPY schemas ./schemas
COPY infra ./infra
RUN pip install -e . && useradd --create-home agentstream && mkdir -p /data \
    && chown agentstream /data
USER agentstream
ENV AGENTSTREAM_DATA_DIR=/data
CMD ["agentstream", "worker", "-l", "info"]
