# Sourced by the checks in .ci/checks/ that drive a real browser (docs-browser.sh,
# stream-browser.sh): Debian's headless Chromium, installed with apt when missing (with python3
# and curl, present on CI's machine), and a pinned Playwright (the Python client and its driver)
# in the virtual environment target/ci-venv-playwright, shared by those checks. Playwright's own
# browser downloads are never used (no `playwright install`): Playwright launches $CHROMIUM.
#
# Sets CHROMIUM (the browser's path), PLAYWRIGHT_VERSION, PLAYWRIGHT_VENV and PY (that
# environment's python).

source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

PLAYWRIGHT_VERSION=1.65.2
PLAYWRIGHT_VENV=target/ci-venv-playwright
CHROMIUM=/usr/bin/chromium

browser_missing=()
[ -x "$CHROMIUM" ] || browser_missing+=(chromium)
command -v python3 >/dev/null || browser_missing+=(python3)
command -v curl >/dev/null || browser_missing+=(curl)
if [ "${#browser_missing[@]}" -gt 0 ]; then
    echo "browser: installing ${browser_missing[*]}" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${browser_missing[@]}"
fi
unset browser_missing
"$CHROMIUM" --version 2>/dev/null || true

PY=$(venv_python "$PLAYWRIGHT_VENV" "playwright==$PLAYWRIGHT_VERSION")
