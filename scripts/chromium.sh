#!/usr/bin/env bash
# The browser the dashboard's tests drive (tests/browser): Debian's Chromium, never a browser Playwright
# downloads. Installed with apt-get when it is missing and apt is usable (as root, or with passwordless sudo).
# If it is still missing: under CI=true this fails, naming the command; elsewhere it says so, and the browser
# tests skip with the same message. PIXELPIPE_TEST_CHROMIUM names another binary.
set -euo pipefail
SCRIPT_TAG=chromium
SCRIPT_NAME=scripts/chromium.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

CHROMIUM="${PIXELPIPE_TEST_CHROMIUM:-/usr/bin/chromium}"
INSTALL="apt-get install -y chromium"

[[ -x "$CHROMIUM" ]] && exit 0

apt_as=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && apt_as=(sudo -n)
fi
if [[ -z "${PIXELPIPE_TEST_CHROMIUM:-}" ]] && command -v apt-get >/dev/null 2>&1 \
    && { [[ "$(id -u)" == 0 ]] || ((${#apt_as[@]})); }; then
    say "$CHROMIUM is missing: $INSTALL"
    export DEBIAN_FRONTEND=noninteractive
    "${apt_as[@]}" apt-get install -y -qq chromium \
        || { "${apt_as[@]}" apt-get update -qq && "${apt_as[@]}" apt-get install -y -qq chromium; } \
        || say "apt-get could not install chromium"
fi
[[ -x "$CHROMIUM" ]] && exit 0

if [[ "${CI:-}" == true ]]; then
    die "$CHROMIUM is missing and CI=true requires the browser tests: run $INSTALL"
fi
say "$CHROMIUM is missing: the browser tests (tests/browser) will be skipped; install it with: $INSTALL"
