"""Svix interoperability (SPEC §3.1): deliveries signed by the official `svix` Python library are
posted to a running calry-hooks, and each answer is compared with the one SPEC §3 prescribes.

Run by svix-interop.sh, once per phase, against a service it started:

    svix_interop.py single   URL   service configured with $SECRET_OLD
    svix_interop.py rotation URL   service restarted with "$SECRET_NEW $SECRET_OLD"

Secrets come from the environment ($SECRET_OLD, $SECRET_NEW, $SECRET_OTHER, never configured),
the tolerance from $TOLERANCE_SECS. Prints one table row per case; exits 1 on any mismatch.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

from svix.webhooks import Webhook

SECRET_OLD = os.environ["SECRET_OLD"]
SECRET_NEW = os.environ["SECRET_NEW"]
SECRET_OTHER = os.environ["SECRET_OTHER"]
TOLERANCE = timedelta(seconds=int(os.environ["TOLERANCE_SECS"]))


def envelope(hook_id: str) -> str:
    return json.dumps(
        {
            "hook": {
                "id": hook_id,
                "eventType": "sync.complete",
                "timeStamp": "2024-02-09T11:33:41.658Z",
                "source": "CALRY_WEBHOOK",
            },
            "data": {
                "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
                "workspaceId": "svix-interop",
                "result": "SUCCESS",
            },
        }
    )


def request(url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, parsed JSON body) of one request; 4xx and 5xx are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def deliver(base, msg_id, payload, secret, at, prefix="webhook", sent=None):
    """Signs `payload` with svix as of `at` and posts `sent` (default: the payload itself)."""
    signature = Webhook(secret).sign(msg_id, at, payload)
    headers = {
        "content-type": "application/json",
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(at.timestamp())),
        f"{prefix}-signature": signature,
    }
    body = (payload if sent is None else sent).encode()
    return request(f"{base}/webhooks/calry", body, headers)


def stored(base, hook_id):
    """The stored event's signatureVerified, or the status when there is none."""
    status, event = request(f"{base}/events/{hook_id}")
    return event["signatureVerified"] if status == 200 else status


def cases(phase, base):
    """(case, expected, got) for each case of the phase."""
    now = datetime.now(timezone.utc)
    late = TOLERANCE + timedelta(seconds=60)
    a = envelope("interop-a")  # message msg_interop_a, kept across the restart
    if phase == "single":
        tampered = envelope("interop-tampered")
        yield "signed, new", 201, deliver(base, "msg_interop_a", a, SECRET_OLD, now)[0]
        yield "stored as signatureVerified", True, stored(base, "interop-a")
        yield "same message re-signed 30 s later", 200, deliver(
            base, "msg_interop_a", a, SECRET_OLD, now + timedelta(seconds=30)
        )[0]
        yield "svix-* header names, new", 201, deliver(
            base, "msg_interop_b", envelope("interop-b"), SECRET_OLD, now, prefix="svix"
        )[0]
        yield "tampered body", 401, deliver(
            base, "msg_interop_t", tampered, SECRET_OLD, now,
            sent=tampered.replace("SUCCESS", "FAILURE"),
        )[0]
        yield "tampered body not stored", 404, stored(base, "interop-tampered")
        yield f"stale (now - {late.seconds} s)", 401, deliver(
            base, "msg_interop_s", envelope("interop-stale"), SECRET_OLD, now - late
        )[0]
        yield f"future (now + {late.seconds} s)", 401, deliver(
            base, "msg_interop_f", envelope("interop-future"), SECRET_OLD, now + late
        )[0]
        yield "signed with another secret", 401, deliver(
            base, "msg_interop_o", envelope("interop-other"), SECRET_OTHER, now
        )[0]
        status, _ = request(
            f"{base}/webhooks/calry", envelope("interop-u").encode(),
            {"content-type": "application/json"},
        )
        yield "unsigned", 401, status
    elif phase == "rotation":
        yield "old secret, new delivery", 201, deliver(
            base, "msg_interop_r1", envelope("interop-r1"), SECRET_OLD, now
        )[0]
        yield "new secret, new delivery", 201, deliver(
            base, "msg_interop_r2", envelope("interop-r2"), SECRET_NEW, now
        )[0]
        yield "new secret, redelivery of the first", 200, deliver(
            base, "msg_interop_a", a, SECRET_NEW, now
        )[0]
        yield "signed with another secret", 401, deliver(
            base, "msg_interop_o", envelope("interop-other"), SECRET_OTHER, now
        )[0]
    else:
        sys.exit(f"unknown phase {phase!r}")


def main():
    phase, base = sys.argv[1], sys.argv[2].rstrip("/")
    failed = 0
    for case, expected, got in cases(phase, base):
        ok = expected == got
        failed += not ok
        print(f"| {phase:<8} | {case:<38} | {expected!s:>8} | {got!s:>8} | {'ok' if ok else 'MISMATCH'} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
