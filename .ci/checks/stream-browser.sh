#!/usr/bin/env bash
# CI check (issue 13, SPEC §10): a real browser's EventSource, in headless Chromium, receives a
# delivery from the live stream within 2 s of its 201, with the `status` message after it and
# `lastEventId` set to the event's position, and resumes by itself with Last-Event-ID after
# losing its connection (.ci/checks/stream_browser.py says exactly what it asserts).
#
# Like docs-browser.sh: Debian's Chromium and a pinned Playwright (.ci/lib/browser.sh, venv
# target/ci-venv-playwright), and the built service (target/debug/calry-hooks) on a free loopback
# port with a private PostgreSQL in a fresh temporary directory and no webhook secret (unsigned
# deliveries are accepted, the query routes, streams included, are open). The page is the
# service's own /healthz: the EventSources are same-origin (the service sends no CORS headers).
# Artifacts in target/ci-artifacts/: stream-browser.json (what the page saw),
# stream-browser-service.log.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARTIFACTS=target/ci-artifacts

log() { printf 'stream-browser: %s\n' "$*"; }

# Chromium and Playwright: sets CHROMIUM and PY.
source .ci/lib/browser.sh

source .ci/lib/service.sh

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS/stream-browser.json"
service_log="$ARTIFACTS/stream-browser-service.log"
: >"$service_log"

log "starting the service on $SERVICE_URL (private PostgreSQL in $SERVICE_DIR)"
service_start "$service_log" || { log "FAIL: the service did not start"; exit 1; }
log "service up ($SERVICE_URL/healthz = 200)"

rc=0
timeout 120 "$PY" .ci/checks/stream_browser.py --base "$SERVICE_URL" --chromium "$CHROMIUM" \
    --artifacts "$ARTIFACTS" --within 2 || rc=$?
if [ "$rc" -ne 0 ]; then
    log "FAIL (exit $rc); what the page saw in $ARTIFACTS/stream-browser.json, the service's log" \
        "in $service_log; its last lines:"
    tail -n 20 "$service_log"
    exit 1
fi

# The browser is gone, and with it every stream's client: the service should stop promptly.
# (Only a warning: how long a graceful stop may take is not this check's subject.)
stop_started=$(date +%s)
service_stop
stop_secs=$(($(date +%s) - stop_started))
if [ "$stop_secs" -gt 5 ]; then
    log "warning: the service took ${stop_secs} s to stop after its streams' client went away" \
        "(SIGTERM; see $service_log)"
fi
