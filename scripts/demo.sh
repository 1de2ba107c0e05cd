#!/usr/bin/env bash
# Posts a realistic mix of Calry deliveries to a running calry-hooks, so that the dashboard (/ui)
# has something to show:
#
#   cargo run                        # the service, on http://127.0.0.1:8080
#   scripts/demo.sh                  # this script (or: scripts/demo.sh http://host:port)
#   open http://127.0.0.1:8080/ui
#
# Three workspaces, a dozen integration accounts in every state (active, deleted, unknown; sync
# complete, error, paused), sync errors with their FAILURE result, events delivered out of order
# (an older event arriving after a newer one), an event of a type Calry may add later, an event
# that names no account, and a redelivery (answered 200 duplicate). Times are relative to now, so
# "failing for 3 h 12 min" reads as such; each run posts fresh hook ids for the same accounts.
#
#   --live         then keep posting a sync event every 3 s (Ctrl-C stops), to watch a workspace
#                  page update live
#   DEMO_SECRET    a whsec_… secret when the service requires signed deliveries
#                  (CALRY_HOOKS_WEBHOOK_SECRETS); needs openssl
#
# Needs bash 4.2 or later and curl.
set -euo pipefail

URL=http://127.0.0.1:8080
LIVE=0
for arg in "$@"; do
    case "$arg" in
        --live) LIVE=1 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) URL=${arg%/} ;;
    esac
done
export TZ=UTC

created=0 duplicates=0 failed=0
answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
NOW=$(printf '%(%s)T' -1)

uuid() {
    if [ -r /proc/sys/kernel/random/uuid ]; then
        cat /proc/sys/kernel/random/uuid
    elif command -v uuidgen >/dev/null; then
        uuidgen | tr 'A-Z' 'a-z'
    else
        printf '%04x%04x-%04x-4%03x-a%03x-%04x%04x%04x\n' $RANDOM $RANDOM $RANDOM $((RANDOM % 4096)) \
            $((RANDOM % 4096)) $RANDOM $RANDOM $RANDOM
    fi
}

# An RFC 3339 time, SECONDS before now, with milliseconds.
ago() {
    local t
    printf -v t '%(%Y-%m-%dT%H:%M:%S)T' $((NOW - $1))
    printf '%s.%03dZ' "$t" $((RANDOM % 1000))
}

# Standard Webhooks signature headers for BODY under DEMO_SECRET (none without it).
sign_args=()
sign() {
    local id=$1 body=$2 ts key
    sign_args=()
    [ -n "${DEMO_SECRET:-}" ] || return 0
    ts=$(printf '%(%s)T' -1)
    key=$(printf '%s' "${DEMO_SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
    sign_args=(-H "webhook-id: $id" -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$(
        printf '%s.%s.%s' "$id" "$ts" "$body" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64)")
}

# post BODY: delivers it, counts the outcome, stops at the first answer that is not 200 or 201.
post() {
    local body=$1 id code
    id=$(sed -E 's/.*"id":"([^"]+)".*/\1/' <<<"$body")
    sign "msg_$id" "$body"
    code=$(curl -sS -o "$answer" -w '%{http_code}' -H 'content-type: application/json' \
        ${sign_args[@]+"${sign_args[@]}"} --data-binary "$body" "$URL/webhooks/calry") || {
        echo "demo: cannot reach $URL (is the service running? cargo run)" >&2
        exit 1
    }
    case "$code" in
        201) created=$((created + 1)) ;;
        200) duplicates=$((duplicates + 1)) ;;
        401) echo "demo: $URL requires signed deliveries: set DEMO_SECRET=whsec_… (one of CALRY_HOOKS_WEBHOOK_SECRETS)" >&2
             exit 1 ;;
        *) failed=$((failed + 1))
           echo "demo: $code for $body: $(cat "$answer")" >&2 ;;
    esac
}

# body WORKSPACE ACCOUNT TYPE SECONDS_AGO [RESULT]: one envelope as Calry sends it (ACCOUNT may
# be empty: an event that names none).
body() {
    local ws=$1 acc=$2 type=$3 at result=${5:-SUCCESS} data
    at=$(ago "$4")
    data="\"workspaceId\":\"$ws\",\"result\":\"$result\""
    [ -n "$acc" ] && data="\"integrationAccountId\":\"$acc\",$data"
    printf '{"hook":{"id":"%s","eventType":"%s","timeStamp":"%s","source":"CALRY_WEBHOOK"},"data":{%s}}' \
        "$(uuid)" "$type" "$at" "$data"
}

deliver() { post "$(body "$@")"; }

M=60 H=3600 D=86400

# An account that was created and linked DAYS ago and has synced well since.
healthy() {
    local ws=$1 acc=$2 days=$3
    deliver "$ws" "$acc" account.created $((days * D))
    deliver "$ws" "$acc" link.created $((days * D - 2 * M))
    deliver "$ws" "$acc" sync.complete $((days * D - 20 * M))
    deliver "$ws" "$acc" sync.complete $((D + 7 * M))
    deliver "$ws" "$acc" sync.complete $((RANDOM % (6 * H) + 5 * M))
}

WS_ACME=6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66
WS_BRIGHT=b0c4e7a2-58d1-4f7e-9a3c-2d6f1e8b7c40
WS_COASTAL=3f1e9d5b-7a2c-4b8e-a1d6-9c0f5e2b4a17

echo "demo: posting deliveries to $URL/webhooks/calry"

# Acme Stays: mostly healthy; one account failing since 3 h 12 min, one paused, one deleted,
# one Calry has only reported syncs for.
healthy $WS_ACME 4a905074-4dd9-426a-b5a9-cf7c9bb33034 30
healthy $WS_ACME 7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e 12
healthy $WS_ACME 0e9f8a7b-6c5d-4e3f-a2b1-c0d9e8f7a6b5 45
acc=91b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d
deliver $WS_ACME $acc account.created $((20 * D))
deliver $WS_ACME $acc link.created $((20 * D - 5 * M))
deliver $WS_ACME $acc sync.complete $((2 * D))
deliver $WS_ACME $acc sync.error $((3 * H + 12 * M)) FAILURE
deliver $WS_ACME $acc sync.error $((2 * H + 5 * M)) FAILURE
deliver $WS_ACME $acc sync.error $((41 * M)) FAILURE
acc=5d6e7f80-9a1b-4c2d-be3f-405162738495
deliver $WS_ACME $acc account.created $((9 * D))
deliver $WS_ACME $acc link.created $((9 * D - M))
deliver $WS_ACME $acc sync.complete $((D + 3 * H))
deliver $WS_ACME $acc sync.paused $((5 * H + 30 * M))
acc=c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b
deliver $WS_ACME $acc account.created $((60 * D))
deliver $WS_ACME $acc link.created $((60 * D - M))
deliver $WS_ACME $acc sync.complete $((3 * D))
deliver $WS_ACME $acc link.deleted $((D + 2 * H))
deliver $WS_ACME $acc account.deleted $((20 * H))
deliver $WS_ACME e8f9a0b1-c2d3-4e4f-9506-a7b8c9d0e1f2 sync.complete $((12 * M))
# An event of a type Calry may add later: kept in history, changes no state.
deliver $WS_ACME 4a905074-4dd9-426a-b5a9-cf7c9bb33034 account.reauthorized $((4 * H))

# Bright Rentals: a fresh failure, a relink, and deliveries out of order.
healthy $WS_BRIGHT 2a3b4c5d-6e7f-4081-9a2b-3c4d5e6f7081 7
acc=8f7e6d5c-4b3a-4291-8807-f6e5d4c3b2a1
deliver $WS_BRIGHT $acc account.created $((3 * D))
deliver $WS_BRIGHT $acc link.created $((3 * D - M))
deliver $WS_BRIGHT $acc sync.complete $((5 * H))
deliver $WS_BRIGHT $acc sync.error $((25 * M)) FAILURE
acc=1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b
deliver $WS_BRIGHT $acc account.created $((14 * D))
deliver $WS_BRIGHT $acc link.created $((14 * D - M))
deliver $WS_BRIGHT $acc link.updated $((2 * D))
deliver $WS_BRIGHT $acc sync.complete $((7 * M))
# Out of order: the newer sync.error arrives first, the older sync.complete after it (a Calry
# retry); the account is failing all the same, since 10 min.
acc=6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e
deliver $WS_BRIGHT $acc account.created $((6 * D))
deliver $WS_BRIGHT $acc link.created $((6 * D - M))
deliver $WS_BRIGHT $acc sync.error $((10 * M)) FAILURE
deliver $WS_BRIGHT $acc sync.complete $((50 * M))
# A redelivery: the same body twice, answered 200 duplicate the second time.
redelivered=$(body $WS_BRIGHT $acc sync.error $((95 * M)) FAILURE)
post "$redelivered"
post "$redelivered"

# Coastal Homes: failing for days, a link deleted but the account kept, an event that names no
# account.
healthy $WS_COASTAL d4c3b2a1-0f9e-4d8c-b7a6-5f4e3d2c1b0a 90
acc=a1b2c3d4-e5f6-4071-8293-a4b5c6d7e8f9
deliver $WS_COASTAL $acc account.created $((40 * D))
deliver $WS_COASTAL $acc link.created $((40 * D - M))
deliver $WS_COASTAL $acc sync.complete $((8 * D))
deliver $WS_COASTAL $acc sync.error $((6 * D + 4 * H)) FAILURE
deliver $WS_COASTAL $acc sync.error $((D)) FAILURE
acc=f0e1d2c3-b4a5-4697-8887-796a5b4c3d2e
deliver $WS_COASTAL $acc account.created $((10 * D))
deliver $WS_COASTAL $acc link.created $((10 * D - M))
deliver $WS_COASTAL $acc sync.complete $((2 * D))
deliver $WS_COASTAL $acc link.deleted $((9 * H))
deliver $WS_COASTAL "" sync.complete $((30 * M))

echo "demo: $created created, $duplicates duplicate, $failed refused"
echo "demo: open $URL/ui"
[ "$failed" -eq 0 ] || exit 1

if [ "$LIVE" = 1 ]; then
    echo "demo: posting a sync event to $URL/ui/workspaces/$WS_ACME every 3 s; Ctrl-C stops"
    live=(4a905074-4dd9-426a-b5a9-cf7c9bb33034 7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e
          91b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d 5d6e7f80-9a1b-4c2d-be3f-405162738495)
    while sleep 3; do
        NOW=$(printf '%(%s)T' -1)
        acc=${live[RANDOM % ${#live[@]}]}
        case $((RANDOM % 4)) in
            0) deliver $WS_ACME "$acc" sync.error 0 FAILURE; echo "demo: sync.error for $acc" ;;
            *) deliver $WS_ACME "$acc" sync.complete 0; echo "demo: sync.complete for $acc" ;;
        esac
    done
fi
