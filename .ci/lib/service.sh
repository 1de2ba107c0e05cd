# Sourced by the checks in .ci/checks/: runs the built service (target/debug/calry-hooks) on its
# own private PostgreSQL in a fresh temporary directory, on a free loopback port ($SERVICE_PORT
# if set), started from that directory (so no .env of the checkout applies) and with nothing from
# the environment that would configure it otherwise; stops it gracefully.
#
#   service_start LOG [VAR=value …]  starts it with those variables, appends its output to LOG,
#                                    and waits for /healthz (the database is open by then)
#   service_stop                     SIGTERM, at most 30 s for it (and its PostgreSQL) to stop,
#                                    then SIGKILL
#   service_cleanup                  service_stop, then removes the temporary directory; run on
#                                    exit (the check's exit status is kept) and on Ctrl-C or SIGTERM
#
# Sets SERVICE_URL (http://127.0.0.1:<port>), SERVICE_DIR and SERVICE_PID. The data directory
# survives service_stop, so a check may restart the service on the same data.

# The service as the checkout's code is now (nothing to do when it is built already).
cargo build --locked --quiet --bin calry-hooks
SERVICE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/calry-hooks"
SERVICE_DIR=$(mktemp -d -t calry-hooks-check.XXXXXX)
chmod 755 "$SERVICE_DIR" # as root, the private cluster runs as an unprivileged user
# A free loopback port, unless SERVICE_PORT names one (to keep to a range of ports).
SERVICE_PORT=${SERVICE_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
SERVICE_URL="http://127.0.0.1:$SERVICE_PORT"
SERVICE_PID=""

service_start() {
    local log=$1
    shift
    (
        cd "$SERVICE_DIR"
        exec env -u DATABASE_URL -u CALRY_HOOKS_WEBHOOK_SECRETS -u CALRY_HOOKS_MAX_BODY_BYTES \
            -u CALRY_HOOKS_ALLOW_UNSIGNED -u CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS \
            CALRY_HOOKS_DATA_DIR="$SERVICE_DIR/data" \
            CALRY_HOOKS_LISTEN="127.0.0.1:$SERVICE_PORT" \
            "$@" "$SERVICE_BIN"
    ) >>"$log" 2>&1 &
    SERVICE_PID=$!
    for _ in $(seq 1 240); do
        if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$SERVICE_URL/healthz" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVICE_PID" 2>/dev/null; then
            echo "calry-hooks exited before answering /healthz; its log ends with:" >&2
            tail -n 40 "$log" >&2
            SERVICE_PID=""
            return 1
        fi
        sleep 0.5
    done
    echo "calry-hooks did not answer /healthz within 120 s; its log ends with:" >&2
    tail -n 40 "$log" >&2
    return 1
}

service_stop() {
    [ -n "$SERVICE_PID" ] || return 0
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$SERVICE_PID" 2>/dev/null; then
        echo "calry-hooks did not stop within 30 s of SIGTERM; killing it" >&2
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
    fi
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=""
}

service_cleanup() {
    service_stop
    rm -rf "$SERVICE_DIR"
}

trap service_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
