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

source .ci/lib/venv.sh
PY=$(venv_python "$VENV" "svix==$SVIX_VERSION")

cargo build --locked --quiet --bin calry-hooks
source .ci/lib/service.sh
LOG="$SERVICE_DIR/service.log"

new_secret() { "$PY" -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(24)).decode())'; }
export SECRET_OLD SECRET_NEW SECRET_OTHER TOLERANCE_SECS
SECRET_OLD=$(new_secret)
SECRET_NEW=$(new_secret)
SECRET_OTHER=$(new_secret)
URL="$SERVICE_URL"

# start_service SECRETS: the service with these webhook secrets, on the same data every time.
start_service() {
    service_start "$LOG" CALRY_HOOKS_WEBHOOK_SECRETS="$1" \
        CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS="$TOLERANCE_SECS"
}

failed=0
printf '| %-8s | %-38s | %8s | %8s | %s |\n' phase case expected got result
start_service "$SECRET_OLD"
"$PY" .ci/checks/svix_interop.py single "$URL" || failed=1
service_stop
start_service "$SECRET_NEW $SECRET_OLD"
"$PY" .ci/checks/svix_interop.py rotation "$URL" || failed=1
service_stop

if [ "$failed" -ne 0 ]; then
    echo "svix interop: MISMATCH (service log: last lines below)" >&2
    tail -n 20 "$LOG" >&2
    exit 1
fi
echo "svix interop: every answer as expected (svix $SVIX_VERSION)"
