#!/usr/bin/env python3
"""Size of the state a Rein SQLite store keeps, read from a live database.

    python3 bench/state_sample.py DB [REGEX]

Prints one line of `key=value` words: for each table whose name matches
REGEX (case-insensitive; default: the state tables' words), `<table>_rows`
and `<table>_kb` (its B-tree and those of its indexes, from `dbstat`), then
`state_kb` (their sum), `file_pages` and `free_pages` (pages freed by
pruning, which SQLite reuses before growing the file). Read-only; each
count is a short read transaction, which a WAL writer does not wait for.
"""
import re
import sqlite3
import sys

db = sys.argv[1]
pattern = re.compile(sys.argv[2] if len(sys.argv) > 2 else "limit|use|session|label|call|state", re.I)
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
objects = con.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')").fetchall()
tables = sorted(n for t, n, _ in objects if t == "table" and pattern.search(n))
words, total = [], 0
for table in tables:
    rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    names = [table] + [n for t, n, tbl in objects if t == "index" and tbl == table]
    size = 0
    for name in names:
        # aggregate=1: one row per B-tree (SQLite >= 3.31).
        got = con.execute("SELECT coalesce(sum(pgsize), 0) FROM dbstat('main', 1) WHERE name = ?", (name,)).fetchone()
        size += got[0]
    total += size
    words += [f"{table}_rows={rows}", f"{table}_kb={size // 1024}"]
words += [
    f"state_kb={total // 1024}",
    f"file_pages={con.execute('PRAGMA page_count').fetchone()[0]}",
    f"free_pages={con.execute('PRAGMA freelist_count').fetchone()[0]}",
]
print(" ".join(words))
