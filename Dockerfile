# The pixelpipe image used by compose.yaml: every role runs from it (`pixelpipe edge|process|api|serve`).
#
# Three stages: the first builds the dashboard (web/: `npm ci` from its lock file, then Vite), the second the
# virtual environment, including the edge's native fast path (native/, Rust: cargo and rustc are copied from
# the official Rust image, and gcc links); the last is the slim runtime with that environment, the sources
# and the dashboard's build (web/dist, served at / by the API role), and no compiler and no Node.
FROM node:20-slim AS web
WORKDIR /web
# The packages first (a layer that changes only with the lock file), then the sources.
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/index.html web/vite.config.ts web/tsconfig.json ./
COPY web/scripts scripts
COPY web/src src
RUN npm run build

FROM python:3.12-slim AS build
COPY --from=rust:1-slim /usr/local/cargo /usr/local/cargo
COPY --from=rust:1-slim /usr/local/rustup /usr/local/rustup
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH="/usr/local/cargo/bin:/app/.venv/bin:$PATH" \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY native native
# The dependencies first (a layer that changes only with uv.lock or native/), then the project.
RUN uv sync --locked --no-dev --no-group bench --no-install-project
COPY schemas schemas
COPY bus bus
COPY ingest ingest
COPY processors processors
COPY notices notices
COPY deliveries deliveries
COPY api api
COPY pixelpipe pixelpipe
RUN uv sync --locked --no-dev --no-group bench

FROM python:3.12-slim
ENV PATH="/app/.venv/bin:$PATH"
COPY --from=build /app /app
# Where the API role looks for the dashboard by default (pixelpipe.settings: web/dist beside the packages).
COPY --from=web /web/dist /app/web/dist
WORKDIR /app
RUN useradd --system --home /var/lib/pixelpipe pixelpipe && mkdir -p /var/lib/pixelpipe \
    && chown pixelpipe /var/lib/pixelpipe && chmod 700 /var/lib/pixelpipe
USER pixelpipe
# The image always has the native fast path: refuse to start an edge without it rather than run slower.
ENV PIXELPIPE_DATA_DIR=/var/lib/pixelpipe PIXELPIPE_NATIVE_EDGE=on
EXPOSE 8000
ENTRYPOINT ["pixelpipe"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
