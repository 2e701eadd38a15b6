#!/usr/bin/env python3
"""Added latency of `rein mcp gateway` per tools/call over stdio, and its memory.

Runs a trivial stdio MCP server (one `echo` tool, standard library only)
directly and behind `rein mcp gateway`, alternately, with one client sending
one call at a time, and prints the median and p99 of each and of the
difference. With --rss it then sends N calls through the gateway and prints
the gateway's resident memory every N/10 calls.

    cargo build --release -p rein-cli
    python3 bench/mcp_gateway_latency.py [--calls 3000] [--db DIR/rein.db] [--rss 100000]

The store is a SQLite file as `rein serve`'s: every decision and every
outcome waits for its commit (--db on /dev/shm leaves the fsync out).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SERVER = r'''
import json, sys
tools = [{"name": "echo", "description": "says it back",
          "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
          "annotations": {"readOnlyHint": True}}]
out = sys.stdout
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "t", "version": "1"}}
    elif m["method"] == "tools/list":
        r = {"tools": tools}
    elif m["method"] == "tools/call":
        r = {"content": [{"type": "text", "text": m["params"]["arguments"].get("text", "")}]}
    else:
        r = {}
    out.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}) + "\n")
    out.flush()
'''

POLICY = """default: block
rules:
  - id: read_only_tools
    action: mcp.t.echo
    when: tool.annotations.readOnlyHint
    effect: allow
"""

INIT = b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n'


def session(cmd, calls, every=0):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    w, r = p.stdin, p.stdout
    w.write(INIT)
    r.readline()
    w.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    lat, rss = [], []
    for i in range(calls):
        msg = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}\n' % (i + 1)
        t = time.perf_counter_ns()
        w.write(msg)
        line = r.readline()
        lat.append(time.perf_counter_ns() - t)
        if b'"text": "x"' not in line and b'"text":"x"' not in line:
            sys.exit(f"unexpected answer: {line!r}")
        if every and (i + 1) % every == 0:
            with open(f"/proc/{p.pid}/status") as f:
                kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            rss.append((i + 1, kb))
    w.close()
    p.wait()
    return lat, rss


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--db", default=None)
    ap.add_argument("--rss", type=int, default=0)
    ap.add_argument("--rein", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "rein"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rein-mcp-bench-")
    with open(os.path.join(tmp, "server.py"), "w") as f:
        f.write(SERVER)
    with open(os.path.join(tmp, "policy.yaml"), "w") as f:
        f.write(POLICY)
    db = a.db or os.path.join(tmp, "rein.db")
    direct = [sys.executable, os.path.join(tmp, "server.py")]
    gateway = [a.rein, "mcp", "gateway", "--policy", os.path.join(tmp, "policy.yaml"), "--db", db,
               "--server", "t", "--"] + direct
    res = {"direct": [], "gateway": []}
    for _ in range(a.rounds):
        for name, cmd in (("direct", direct), ("gateway", gateway)):
            lat, _ = session(cmd, a.calls)
            res[name].extend(lat[100:])  # warm-up left out
    for name, lat in res.items():
        print(f"{name:8} median {pct(lat, 0.5):7.1f} µs   p99 {pct(lat, 0.99):7.1f} µs")
    d, g = res["direct"], res["gateway"]
    print(f"added    median {pct(g, 0.5) - pct(d, 0.5):7.1f} µs   p99 {pct(g, 0.99) - pct(d, 0.99):7.1f} µs")
    if a.rss:
        _, rss = session(gateway, a.rss, every=max(1, a.rss // 10))
        print("gateway RSS (calls: KiB):", ", ".join(f"{n}: {kb}" for n, kb in rss))


main()
