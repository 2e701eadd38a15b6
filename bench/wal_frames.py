#!/usr/bin/env python3
"""WAL frames written per commit by the audit table's layout, for a batch of
records of the size the decision benchmark writes: how much each index and
the chain-head row add. A model of the layout of
crates/rein-store/src/sqlite/schema.rs in Python's sqlite3 (no fsync, no
automatic checkpoint; frames counted from the growth of the -wal file).

    python3 bench/wal_frames.py [RECORDS_PER_COMMIT]
"""
import os
import sys
import sqlite3
import tempfile

PAGE = 4096
FRAME = PAGE + 24  # each WAL frame is a 24-byte header and one page


def frames_per_commit(indexes, head=True, per_commit=29, commits=300):
    path = os.path.join(tempfile.mkdtemp(), "wal-frames.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, decision_id TEXT NOT NULL,"
        " phase TEXT NOT NULL, action TEXT NOT NULL, actor_id TEXT, session TEXT, effect TEXT NOT NULL,"
        " rules TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    if "time" in indexes:
        db.execute("CREATE INDEX audit_time ON audit (time)")
    if "decision_id" in indexes:
        db.execute("CREATE INDEX audit_decision ON audit (decision_id)")
    db.execute("CREATE TABLE chain_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL)")
    db.execute("INSERT INTO chain_head VALUES (1, 0, '')")
    seq = 0

    def commit():
        nonlocal seq
        db.execute("BEGIN IMMEDIATE")
        rows = []
        for _ in range(per_commit):
            seq += 1
            # Increasing, as the real times and v7 decision ids are.
            time = "2026-11-25T00:00:00.%06dZ" % seq
            decision = "019ab000-0000-7000-8000-%012x" % seq
            digest = "%064x" % (seq * 0x9E3779B97F4A7C15 % (1 << 256))
            rows.append((seq, time, decision, "before", "refund", "u1", None, "allow", '["r1"]', "x" * 554, digest, digest))
        db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if head:
            db.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (seq, "a" * 64))
        db.execute("COMMIT")

    for _ in range(70):  # a log that is not empty
        commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = os.path.getsize(path + "-wal")
    for _ in range(commits):
        commit()
    grown = os.path.getsize(path + "-wal") - before
    db.close()
    return grown / FRAME / commits


def main():
    per_commit = int(sys.argv[1]) if len(sys.argv) > 1 else 29
    print(f"{per_commit} records of ~850 bytes per commit; WAL frames per commit:")
    for label, indexes, head in [
        ("table + chain head (no index)", (), True),
        ("+ index on time", ("time",), True),
        ("+ index on decision_id", ("decision_id",), True),
        ("+ both indexes (the schema)", ("time", "decision_id"), True),
        ("both indexes, no chain-head row", ("time", "decision_id"), False),
    ]:
        print(f"  {label:36} {frames_per_commit(indexes, head, per_commit):6.1f}")


if __name__ == "__main__":
    main()
