#!/usr/bin/env python3
"""fdatasync latency of the disk under DIR (default: the current directory).

Writes about one commit's worth of WAL (12 pages of 4 KiB), then syncs, 1,000
times, over a 16 MiB file allocated beforehand (as a WAL in use is: it is
overwritten in place after each checkpoint), and prints the percentiles.
Every durable decision waits for one such sync, or for one and a half on
average when it arrives during another.
"""
import os
import sys
import time

d = sys.argv[1] if len(sys.argv) > 1 else "."
path = os.path.join(d, "fsync-probe.tmp")
size, chunk, n = 16 << 20, 12 * 4096, 1000
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
try:
    os.pwrite(fd, b"\0" * size, 0)
    os.fsync(fd)
    buf = os.urandom(chunk)
    lat, off = [], 0
    for _ in range(n):
        os.pwrite(fd, buf, off)
        off = (off + chunk) % (size - chunk)
        t = time.perf_counter()
        os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(
        f"disk: fdatasync after a {chunk // 1024} KiB write, {n} times: "
        f"p50 {p(0.5):.0f} µs, p90 {p(0.9):.0f}, p99 {p(0.99):.0f}, p99.9 {p(0.999):.0f}, max {lat[-1]:.0f}"
    )
finally:
    os.close(fd)
    os.unlink(path)
