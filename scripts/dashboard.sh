#!/usr/bin/env bash
# Builds the dashboard (web/ -> web/dist/) for `make install` / `make run`: `npm ci` (the packages pinned by
# web/package-lock.json, from the npm registry) when node_modules is older than the lock file, then
# `npm run build` when dist/ is older than a source. Without node and npm, or when the packages cannot be
# fetched, it says so in one line and succeeds: everything else runs, and / says how to build the dashboard
# (as the edge's native fast path is left out without cargo). Under CI=true, where the browser tests need the
# build, either is an error naming the command.
set -uo pipefail
cd "$(dirname "$0")/../web"
HOW="cd web && npm ci && npm run build"

skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "dashboard: $1; CI=true requires it: $HOW" >&2
    exit 1
  fi
  echo "dashboard not built ($1): everything else runs, and / says how; to build it: $HOW"
  exit 0
}

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip "node and npm not found"

# npm ci writes node_modules/.package-lock.json: newer than the lock file means the packages are in place.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || skip "npm ci failed: the npm registry unreachable?"
fi

stale=yes
if [ -f dist/index.html ] && [ -d dist/docs-assets ]; then
  newer=$(find src index.html vite.config.ts tsconfig.json package.json package-lock.json scripts \
    -newer dist/index.html -print -quit)
  [ -z "$newer" ] && stale=no
fi
if [ "$stale" = yes ]; then
  npm run build --silent >/dev/null || skip "npm run build failed (run it in web/ to see why)"
  echo "dashboard built: web/dist (served at /)"
fi
