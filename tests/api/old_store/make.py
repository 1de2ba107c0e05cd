#!/usr/bin/env python3
"""Makes the store that the upgrade test (tests/api/store.rs) starts from: a calry-hooks binary
of an earlier main fills a store of its own, and this keeps what it wrote (store.sql, a plain
pg_dump of its database, schema and rows) and what it answered (answers.json, with the tokens it
made). The test loads the dump, upgrades it with today's migrations and asks today's service the
same questions.

    git worktree add /tmp/old-main <rev> && (cd /tmp/old-main && cargo build)
    python3 tests/api/old_store/make.py /tmp/old-main/target/debug/calry-hooks <rev>

Run it as root (the binary's private cluster then runs as `postgres`), with the PostgreSQL server
binaries installed. Nothing but the standard library is needed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = 18431
BASE = f"http://127.0.0.1:{PORT}"

# The questions asked before and after the upgrade, with the all-workspaces token.
ROUTES = [
    "/workspaces",
    "/workspaces/w1/status",
    "/workspaces/w2/status",
    "/workspaces/w1/accounts/a",
    "/workspaces/w1/events?limit=7",
    "/workspaces/w1/events?order=asc&eventType=sync.*",
    "/workspaces/w2/events?integrationAccountId=a",
    "/events/old-03",
    "/accounts",
    "/accounts?syncState=error",
    "/workspaces/w1/accounts/a/timeline",
    "/workspaces/w2/accounts/c/timeline",
    "/feed?limit=100",
    "/workspaces/w1/feed",
]


def event(hook_id, workspace, account, event_type, at):
    data = {"workspaceId": workspace, "result": "SUCCESS"}
    if account is not None:
        data["integrationAccountId"] = account
    return {
        "hook": {"id": hook_id, "eventType": event_type, "timeStamp": at, "source": "CALRY_WEBHOOK"},
        "data": data,
    }


def deliveries():
    """Calry's example, then 30 events of two workspaces and three accounts arriving out of
    order (each fifth one late), one without an account, one of a type calry-hooks does not know,
    and a redelivery."""
    seed = {
        "data": {
            "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
            "result": "SUCCESS",
            "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66",
        },
        "hook": {
            "eventType": "sync.complete",
            "id": "c1348091-bd3e-4598-9e7f-5ea457f02e85",
            "timeStamp": "2024-02-09T11:33:41.658Z",
            "source": "CALRY_WEBHOOK",
        },
    }
    kinds = [
        ("a", "sync.complete"),
        ("a", "sync.error"),
        ("b", "account.created"),
        ("b", "link.deleted"),
        ("c", "sync.paused"),
    ]
    old = []
    for i in range(30):
        account, kind = kinds[i % 5]
        workspace = "w2" if i % 3 == 0 else "w1"
        old.append(event(f"old-{i:02}", workspace, account, kind, f"2026-03-{1 + i % 28:02}T10:00:00Z"))
    late = [e for i, e in enumerate(old) if i % 5 == 4]
    on_time = [e for i, e in enumerate(old) if i % 5 != 4]
    bodies = [seed] + on_time + late[::-1]
    bodies.append(event("no-account", "w1", None, "sync.error", "2026-03-31T10:00:00Z"))
    bodies.append(event("unknown-type", "w1", "a", "calendar.synced", "2026-03-31T11:00:00Z"))
    return bodies, old[3]


def request(path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def main():
    binary, rev = os.path.abspath(sys.argv[1]), sys.argv[2]
    work = tempfile.mkdtemp(prefix="calry-old-store-")
    os.chmod(work, 0o755)
    env = dict(os.environ, CALRY_HOOKS_DATA_DIR=os.path.join(work, "data"),
               CALRY_HOOKS_LISTEN=f"127.0.0.1:{PORT}")

    def command(*args):
        out = subprocess.run([binary, *args], env=env, check=True, capture_output=True, text=True)
        return out.stdout

    tokens = {
        "all": command("token", "create", "--all-workspaces", "--name", "all").splitlines()[0],
        "w1": command("token", "create", "--workspace", "w1", "--name", "w1").splitlines()[0],
        "revoked": command("token", "create", "--all-workspaces", "--name", "revoked").splitlines()[0],
    }
    command("token", "revoke", "3")
    log = open(os.path.join(work, "serve.log"), "w")
    serving = subprocess.Popen([binary], env=env, stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(BASE + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        bodies, again = deliveries()
        for body in bodies:
            status, answer = request("/webhooks/calry", body)
            assert status == 201, (status, answer)
        status, answer = request("/webhooks/calry", again)
        assert status == 200 and answer["deliveryCount"] == 2, (status, answer)
        changed = json.loads(json.dumps(again))
        changed["data"]["result"] = "FAILURE"
        status, _ = request("/webhooks/calry", changed)
        assert status == 409, status
        # The feed shows an event once every older transaction has ended.
        for _ in range(100):
            _, feed = request("/feed?limit=100", token=tokens["all"])
            if len(feed["items"]) == len(bodies):
                break
            time.sleep(0.05)
        answers = {}
        for route in ROUTES:
            status, answer = request(route, token=tokens["all"])
            assert status == 200, (route, status, answer)
            answers[route] = answer
        socket_dir = os.path.join(work, "data", "postgres")
        dump = subprocess.run(
            ["runuser", "-u", "postgres", "--", "pg_dump", "-h", socket_dir, "-U", "postgres",
             "--no-owner", "--no-privileges", "--column-inserts", "calry_hooks"],
            check=True, capture_output=True, text=True).stdout
    finally:
        serving.terminate()
        serving.wait()
    # Its psql commands (`\\restrict`) are psql's alone; the test loads the rest on a
    # connection of its own.
    kept = [line for line in dump.splitlines() if not line.startswith("\\")]
    header = f"-- A store filled by calry-hooks {rev} (tests/api/old_store/make.py).\n"
    with open(os.path.join(HERE, "store.sql"), "w") as out:
        out.write(header + "\n".join(kept) + "\n")
    with open(os.path.join(HERE, "answers.json"), "w") as out:
        json.dump({"rev": rev, "tokens": tokens, "answers": answers}, out, indent=1, sort_keys=True)
        out.write("\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
