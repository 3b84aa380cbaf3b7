# The pixelpipe image used by compose.yaml: every role runs from it (`pixelpipe edge|process|api|serve`).
FROM python:3.12-slim
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PATH="/app/.venv/bin:$PATH"
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY schemas schemas
COPY ingest ingest
COPY processors processors
COPY api api
COPY pixelpipe pixelpipe
RUN uv sync --locked --no-dev
RUN useradd --system --home /var/lib/pixelpipe pixelpipe && mkdir -p /var/lib/pixelpipe \
    && chown pixelpipe /var/lib/pixelpipe
USER pixelpipe
ENV PIXELPIPE_DATA_DIR=/var/lib/pixelpipe
EXPOSE 8000
ENTRYPOINT ["pixelpipe"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
