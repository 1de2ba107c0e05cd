#!/usr/bin/env bash
# CI check (SPEC §12): the dashboard at /ui in a real browser. Each page (overview, workspace,
# account) renders at 1440 px and 390 px with no console error and no request to another host; a
# delivery made while a workspace page is open shows up within 2 s; a workspace of 3,000 accounts
# draws a bounded number of rows and stays live; account ids that look alike each show as
# themselves; a page whose stream had no message yet when the service restarted misses nothing
# after it; a page whose service stops answering (SIGSTOP) says so and, once it goes on, shows a
# delivery made then once, its stream opened again; once a token exists, the page asks for it (the
# focus in the form's field, kept in the form, and given back to the page when it closes), refuses a
# wrong one in the form (which stays open, the focus in its field), and works with the right one
# (its stream read through fetch), and a page whose stream had a message resumes after a
# restart with Last-Event-ID, missing nothing; a hidden tab closes its stream and, shown again,
# shows what came meanwhile; an older answer that comes last (the overview's refresh, an account's
# older page of changes, an older read of its delivery counts) does not undo a newer one; an
# account page makes one refresh of its changes at a time, and one more after a change during
# it, as the overview does, also while the service cannot be reached; events removed from the
# primary while a replica behind never held them are taken off within 5 minutes; a stream answered 404 is given up (the page says it is not live and asks no
# more); a page asking for a token when the last token is revoked stops asking and works without
# one; the rows shown, the sort and the scroll position of the overview and of a workspace page
# are kept across Back and a reload.
# .ci/checks/dashboard_browser.py says exactly what it asserts.
#
# Like stream-browser.sh: Debian's Chromium and a pinned Playwright (.ci/lib/browser.sh, venv
# target/ci-venv-playwright), and the built service (target/debug/calry-hooks) on a free loopback
# port with a private PostgreSQL in a fresh temporary directory and no webhook secret. The sample
# data is scripts/demo.sh's. The token is made with `calry-hooks token create` against the running
# service's cluster, which switches the query routes to tokens at once: no restart.
# Artifacts in target/ci-artifacts/: dashboard-*.png (every page at both widths, the token form,
# the live, large and token-protected workspace pages), dashboard-browser-service.log.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARTIFACTS=target/ci-artifacts

log() { printf 'dashboard-browser: %s\n' "$*"; }

# Chromium and Playwright: sets CHROMIUM and PY.
source .ci/lib/browser.sh

source .ci/lib/service.sh

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/dashboard-*.png
service_log="$PWD/$ARTIFACTS/dashboard-browser-service.log"
: >"$service_log"

log "starting the service on $SERVICE_URL (private PostgreSQL in $SERVICE_DIR)"
service_start "$service_log" || { log "FAIL: the service did not start"; exit 1; }
log "service up ($SERVICE_URL/healthz = 200)"

log "sample data: scripts/demo.sh $SERVICE_URL"
bash scripts/demo.sh "$SERVICE_URL" || { log "FAIL: scripts/demo.sh could not post its deliveries"; exit 1; }

# A phase's time limit: the open phase took 100-165 s on CI's machine, more with others on it.
run() {
    local rc=0
    timeout 300 "$PY" .ci/checks/dashboard_browser.py --base "$SERVICE_URL" --chromium "$CHROMIUM" \
        --artifacts "$ARTIFACTS" --within 2 "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "FAIL (exit $rc); screenshots in $ARTIFACTS/dashboard-*.png, the service's log in" \
            "$service_log; its last lines:"
        tail -n 20 "$service_log"
        exit 1
    fi
}

run --phase open

# Runs phase $1 with $2 done to the service under its open pages: the check opens them and says
# so (ready), $2 runs here, then (up) the check delivers at once.
under_open_pages() {
    local handshake="$SERVICE_DIR/handshake-$1" pid
    mkdir -p "$handshake"
    run --phase "$1" --handshake "$handshake" &
    pid=$!
    while [ ! -e "$handshake/ready" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    if [ -e "$handshake/ready" ]; then
        "$2" || exit 1
        touch "$handshake/up"
    fi
    wait "$pid" || exit 1
}

# Meanwhile the pages show the outage.
restart() {
    log "restarting the service under the open pages, down for 6 s"
    service_stop
    sleep 6 # long enough for the banner's countdown to tick
    service_start "$service_log" || { log "FAIL: the service did not start again"; return 1; }
}

# A service that answers nothing and refuses nothing; the check waits until its page says so.
freeze() {
    log "stopping the service (SIGSTOP) under the open page until the page says so"
    kill -STOP "$SERVICE_PID"
    local waited=0
    while [ ! -e "$SERVICE_DIR/handshake-frozen/told" ] && [ "$waited" -lt 450 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -CONT "$SERVICE_PID"
}

# A page that had no message yet when the service restarted must miss nothing after it.
under_open_pages resume restart

# A page whose service stops answering says so, and goes on once it does.
under_open_pages frozen freeze

# From here on the query routes need a token (one exists).
token=$(cd "$SERVICE_DIR" && env -u DATABASE_URL CALRY_HOOKS_DATA_DIR="$SERVICE_DIR/data" \
    "$SERVICE_BIN" token create --all-workspaces --name ci-dashboard 2>>"$service_log" | head -n 1)
[ -n "$token" ] || { log "FAIL: calry-hooks token create printed no token (see $service_log)"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "$SERVICE_URL/workspaces")
[ "$code" = 401 ] || { log "FAIL: with a token made, GET /workspaces without one answered $code, not 401"; exit 1; }
log "a token exists: GET /workspaces without it answers 401"
DASHBOARD_TOKEN="$token" run --phase token
# A page reading its stream with the token, which had a message, resumes after a restart.
DASHBOARD_TOKEN="$token" under_open_pages token-resume restart

# Every token revoked: the query routes are open again.
revoke_all() {
    log "revoking every token under a page that asks for one"
    local ids
    ids=$(cd "$SERVICE_DIR" && env -u DATABASE_URL CALRY_HOOKS_DATA_DIR="$SERVICE_DIR/data" \
        "$SERVICE_BIN" token list 2>>"$service_log" | cut -f1)
    [ -n "$ids" ] || { log "FAIL: calry-hooks token list printed no token"; return 1; }
    for id in $ids; do
        (cd "$SERVICE_DIR" && env -u DATABASE_URL CALRY_HOOKS_DATA_DIR="$SERVICE_DIR/data" \
            "$SERVICE_BIN" token revoke "$id" >>"$service_log" 2>&1) || return 1
    done
}
# A page that asks for a token when the last one is revoked stops asking.
under_open_pages revoked revoke_all

log "PASS; screenshots: $(cd "$ARTIFACTS" && ls dashboard-*.png | tr '\n' ' ')"
