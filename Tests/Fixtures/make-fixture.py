#!/usr/bin/env python3
"""Makes an upgrade fixture: a small ledger written by the build of one on-disk format, and the answers
that build gave, so that the upgrade tests compare a later build's answers with them.

    python3 make-fixture.py PATH/TO/usage-ledger OUTPUT_DIR

Each was made once, with the release build of its format, before the next format existed:
    format4/  commit b10da4e (format 4)
    format5/  commit 2a119b4 (format 5)
Rerunning it needs that build (git checkout COMMIT)."""
import json, os, random, shutil, subprocess, sys

cli, out = sys.argv[1], sys.argv[2]
rng = random.Random(4)
owners = ["org-a", "org-b", "org-c"]
events, late = [], []
n = 0

def ts(minute):
    h, m = divmod(minute, 60)
    d, h = divmod(h, 24)
    return f"2026-01-{1 + d:02d}T{h:02d}:{m:02d}:{rng.randrange(60):02d}Z"

def event(kind, rtype, rid, owner, minute, **extra):
    global n
    n += 1
    e = {"id": f"fx-{n}", "kind": kind, "resource": {"type": rtype, "id": rid, "owner": owner},
         "occurred_at": ts(minute)}
    e.update(extra)
    return e

def phase(first_minute, last_minute):
    batch = []
    for r in range(12):
        owner = owners[r % 3]
        if r % 4 != 3:  # long-running apps that scale and get adjustments
            rid = f"app-{r}"
            minute = first_minute + rng.randrange(120)
            if first_minute == 0:
                kind = "was_running" if r % 2 else "started"
                batch.append(event(kind, "app", rid, owner, minute,
                                   footprint={"instances": 1 + r % 3, "memory_mb": 256 << (r % 3)}))
            while True:
                minute += 200 + rng.randrange(900)
                if minute >= last_minute:
                    break
                if rng.randrange(3) == 0:
                    batch.append(event("adjustment", "app", rid, owner, minute,
                                       deltas={"network_bytes": rng.randrange(-5000, 100000)}, reason="metered"))
                else:
                    batch.append(event("started", "app", rid, owner, minute,
                                       footprint={"instances": 1 + rng.randrange(4), "memory_mb": 512}))
            if r == 10 and first_minute > 0:
                batch.append(event("stopped", "app", rid, owner, last_minute - 50, reason="scaled_to_zero"))
        else:  # short tasks
            minute = first_minute + rng.randrange(60)
            while minute + 40 < last_minute:
                rid = f"task-{r}"
                batch.append(event("started", "task", rid, owner, minute, footprint={"memory_mb": 128}))
                batch.append(event("stopped", "task", rid, owner, minute + 5 + rng.randrange(30)))
                minute += 300 + rng.randrange(600)
    batch.sort(key=lambda e: e["occurred_at"])
    return batch

def write(name, lines):
    path = os.path.join(out, name)
    with open(path, "w") as f:
        for e in lines:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    return path

def run(*args, capture=None):
    result = subprocess.run([cli, *args], capture_output=True, text=True)
    if result.returncode not in (0, 3, 4):  # 4: the feed reports pruned events
        sys.exit(f"{args}: {result.returncode} {result.stderr}")
    if capture:
        with open(os.path.join(out, "expected", capture), "w") as f:
            f.write(result.stdout)

os.makedirs(os.path.join(out, "expected"), exist_ok=True)
db = os.path.join(out, "work")
shutil.rmtree(db, ignore_errors=True)
first = phase(0, 3 * 1440)  # January 1 to 3
retries = [dict(e) for e in first[5:9]]
first_path = write("phase1.ndjson", first + retries)
run("init", "--db", db)
run("append", "--db", db, "--now", "2026-01-03T12:00:00Z", first_path)
run("rollup", "--db", db, "--now", "2026-01-03T12:10:00Z")
# Late events before the checkpoint refold rolled-up hours.
late = [event("adjustment", "app", "app-1", "org-b", 1500, deltas={"network_bytes": 777}),
        event("started", "app", "app-2", "org-c", 1700, footprint={"instances": 9, "memory_mb": 64})]
run("append", "--db", db, "--now", "2026-01-03T12:20:00Z", write("late.ndjson", late))
run("compact", "--db", db, "--now", "2026-01-03T12:30:00Z", "--cutoff-age-days", "1",
    "--snapshot-retention-days", "5")
second = [e for e in phase(3 * 1440 + 60, 3 * 1440 + 600)]
run("append", "--db", db, "--now", "2026-01-04T10:20:00Z", write("phase2.ndjson", second))
run("rollup", "--db", db, "--now", "2026-01-04T08:10:00Z")

now = "2026-01-04T10:30:00Z"
run("current", "--db", db, "--format", "json", capture="current.json")
run("events", "--db", db, "--format", "json", "--after", "0", "--limit", "100000", capture="events.json")
for owner in owners:
    run("current", "--db", db, "--format", "json", "--owner", owner, capture=f"current-{owner}.json")
    for g in ["total", "hour", "day"]:
        for grouped in [False, True]:
            extra = ["--group-by", "resource"] if grouped else []
            run("usage", "--db", db, "--format", "json", "--now", now, "--owner", owner,
                "--from", "2026-01-01T00:00:00Z", "--to", now, "--granularity", g, *extra,
                capture=f"usage-{owner}-{g}{'-grouped' if grouped else ''}.json")
resources = sorted({(e["resource"]["type"], e["resource"]["id"]) for e in first + second})
for rtype, rid in resources:
    for g in ["total", "hour", "day"]:
        run("usage", "--db", db, "--format", "json", "--now", now, "--resource", f"{rtype}/{rid}",
            "--from", "2026-01-01T00:00:00Z", "--to", now, "--granularity", g,
            capture=f"usage-{rtype}-{rid}-{g}.json")
run("verify", "--db", db, "--format", "json", capture="verify.json")
# A compacted copy keeps the fixture small.
shutil.rmtree(os.path.join(out, "ledger"), ignore_errors=True)
run("backup", "--db", db, "--to", os.path.join(out, "ledger"), "--compact")
shutil.rmtree(db)
for name in ["phase1.ndjson", "late.ndjson", "phase2.ndjson"]:
    os.remove(os.path.join(out, name))
