#!/usr/bin/env bash
# Svix interoperability (SPEC §3.1): runs the built service on a private PostgreSQL in a fresh
# temp dir with a webhook secret, posts deliveries signed by the official `svix` Python library
# (svix_interop.py), then restarts it with two secrets (rotation) and checks again. Prints a table
# of cases and answers; fails on any mismatch. The service is always stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

SVIX_VERSION=2.9.1
VENV=target/ci-venv
TOLERANCE_SECS=300

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('svix') != '$SVIX_VERSION')" 2>/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check "svix==$SVIX_VERSION"
fi

cargo build --quiet --bin calry-hooks
BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/calry-hooks"

WORK=$(mktemp -d)
chmod 755 "$WORK" # the private cluster runs as an unprivileged user when we are root
PID=""

stop_service() {
    [ -n "$PID" ] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$PID" 2>/dev/null; then
        echo "calry-hooks did not stop within 30 s of SIGTERM; killing it" >&2
        kill -KILL "$PID" 2>/dev/null || true
    fi
    wait "$PID" 2>/dev/null || true
    PID=""
}
cleanup() {
    stop_service
    rm -rf "$WORK"
}
trap cleanup EXIT

new_secret() { "$PY" -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(24)).decode())'; }
export SECRET_OLD SECRET_NEW SECRET_OTHER TOLERANCE_SECS
SECRET_OLD=$(new_secret)
SECRET_NEW=$(new_secret)
SECRET_OTHER=$(new_secret)

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"

# start_service SECRETS: runs the service in the background and waits for /healthz.
start_service() {
    env -u DATABASE_URL \
        CALRY_HOOKS_DATA_DIR="$WORK/data" \
        CALRY_HOOKS_LISTEN="127.0.0.1:$PORT" \
        CALRY_HOOKS_WEBHOOK_SECRETS="$1" \
        CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS="$TOLERANCE_SECS" \
        "$BIN" >>"$WORK/service.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 240); do
        if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$URL/healthz" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "calry-hooks exited before answering /healthz:" >&2
            tail -n 20 "$WORK/service.log" >&2
            PID=""
            return 1
        fi
        sleep 0.5
    done
    echo "calry-hooks did not answer /healthz within 120 s:" >&2
    tail -n 20 "$WORK/service.log" >&2
    return 1
}

failed=0
printf '| %-8s | %-38s | %8s | %8s | %s |\n' phase case expected got result
start_service "$SECRET_OLD"
"$PY" .ci/checks/svix_interop.py single "$URL" || failed=1
stop_service
start_service "$SECRET_NEW $SECRET_OLD"
"$PY" .ci/checks/svix_interop.py rotation "$URL" || failed=1
stop_service

if [ "$failed" -ne 0 ]; then
    echo "svix interop: MISMATCH (service log: last lines below)" >&2
    tail -n 20 "$WORK/service.log" >&2
    exit 1
fi
echo "svix interop: every answer as expected (svix $SVIX_VERSION)"
