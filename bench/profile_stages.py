#!/usr/bin/env python3
"""Where the server's CPU time goes, by stage of a decision.

Reads `perf script -F comm,tid,ip,sym,dso` (with call chains, inlined
frames included) of decide_server and attributes each sample twice:

- to a *stage*: the nearest user-space frame (from the leaf up) that names
  one, so allocation, copies and the system calls a stage makes are charged
  to it (e.g. the futex wake of the audit channel goes to "audit: enqueue");
- to a *kernel class*, when the sample is in the kernel.

Usage: perf script ... | profile_stages.py [CPU_US_PER_DECISION]
With CPU_US_PER_DECISION (server CPU per request, from the same variant's
wrk run) the shares are also given as microseconds per decision.
"""
import re
import sys
from collections import Counter

# (stage, pattern) in priority order *within one frame*; frames are tried
# from the leaf up, and the first frame matching any pattern wins.
STAGES = [
    ("writer: chain hash + seq splice", r"rein_store::chain::record_hash_hex|CanonicalParts::with_seq"),
    ("audit: encode record (canonical JSON, keys)", r"PreparedAppend::new|CanonicalParts::new|canonical_str_list|rein_store::chain::parse_time|rein_store::chain::write_"),
    ("audit: build AuditEntry (clone + redact)", r"rein_runtime::Runtime::entry|rein_store::redact|Policy::sensitive_fields|rein_engine::policy::sensitive_paths"),
    ("audit: drop AuditEntry/AuditRecord", r"drop_in_place<rein_store::model::Audit|drop_in_place<core::result::Result<rein_store::model::AuditRecord"),
    ("audit: enqueue + await reply (mpsc, oneshot)", r"SqliteStore as rein_store::Store>::append|SqliteStore::send|std::sync::mpsc|std::sync::mpmc|tokio::sync::oneshot"),
    ("audit: no-audit store", r"NoAudit as rein_store::Store"),
    ("writer: batch loop + replies", r"rein_store::sqlite::writer::"),
    ("metrics (prometheus histograms, counters)", r"rein_server::metrics|prometheus_client|MeteredStore"),
    ("recent-decisions cache", r"rein_runtime::recent"),
    ("ids and clocks (uuid v7, now, time format)", r"uuid::|jiff::|rein_store::chain::format_time|Instant>::now|Instant>::elapsed|clock_gettime"),
    ("request: JSON value -> Request", r"rein_engine::request::.*(from_json|Deserialize)|drop_in_place<.*rein_engine::request::Request"),
    ("policy decide (engine)", r"rein_engine::"),
    ("request: read body + parse JSON", r"rein_server::body|serde_json::de::|serde_json::value::de|ValueVisitor|decide_server::floor"),
    ("auth: bearer token (sha256 + compare)", r"rein_server::auth::(Tokens|digest)"),
    ("answer: serialise JSON", r"serde_json::ser|axum::json|Answer>::serialize|for rein_runtime::Answer|Json<T> as axum_core"),
    ("route handler, runtime glue (rest)", r"rein_server::routes|rein_runtime::"),
    ("HTTP stack (hyper, axum, tower)", r"hyper::|hyper_util::|axum::|axum_core::|tower::|tower_http::|http::|rein_server::auth::require_role"),
    ("socket read/write (tokio::net, mio; TCP in the kernel)", r"tokio::net|mio::net|tokio::io::poll_evented|PollEvented"),
    ("epoll driver (tokio::runtime::io, mio::poll)", r"tokio::runtime::io|mio::"),
    ("tokio scheduler, park, timers", r"tokio::"),
    # SQLite's own C functions (no `::`), and rusqlite.
    ("SQLite (insert, indexes, WAL, commit)", r"rusqlite::|^(sqlite3|wal|pcache|btree|vdbe|pager|balance_|pcache1|unixSync|unixWrite|full_fsync)"),
]
STAGES = [(name, re.compile(p)) for name, p in STAGES]

KERNEL = [
    ("fsync + block I/O", r"fdatasync|fsync|file_write_and_wait|jbd2|blk_|virtio|iowrite|ext4_sync|submit_bio|bio_"),
    ("file write/read (WAL, db pages)", r"ext4_|vfs_write|vfs_read|pwrite|pread|generic_perform_write|filemap|copy_folio|iomap"),
    ("TCP loopback (send, receive, softirq)", r"tcp_|inet_|sock_|skb|__sys_sendto|__sys_recvfrom|ip_|__dev_queue|net_rx|__netif|loopback|__napi|do_softirq|__x64_sys_write|__x64_sys_read|sock_"),
    ("epoll", r"ep_poll|do_epoll|ep_"),
    ("scheduling, futex, wake-ups", r"futex|schedule|finish_task_switch|try_to_wake_up|ttwu|wake_up|enqueue_task|dequeue_task|pick_next|switch_to"),
    ("syscall entry/exit, interrupts", r"syscall|entry_|irqentry|irq|apic|exit_to_user"),
    ("memory (page faults, mmap)", r"page_fault|handle_mm|do_anonymous|mmap|munmap|madvise|clear_page|folio"),
]
KERNEL = [(name, re.compile(p)) for name, p in KERNEL]


def samples(stream):
    """Yields (comm, [(sym, dso)...] leaf first)."""
    comm, frames = None, []
    for line in stream:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
            continue
        if not line[0].isspace():
            comm = line.split()[0] if line.split() else "?"
            frames = []
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\(([^)]*)\)\s*$", line)
        if m:
            frames.append((m.group(1), m.group(2)))
    if comm is not None:
        yield comm, frames


def is_kernel(dso):
    return "kernel" in dso or dso.startswith("[k")


def classify(frames):
    for sym, dso in frames:
        if is_kernel(dso):
            continue
        for name, pat in STAGES:
            if name.startswith("SQLite") and "::" not in sym:
                if pat.search(sym.lower()) or pat.search(sym):
                    return name
            elif not name.startswith("SQLite") and pat.search(sym):
                return name
            elif name.startswith("SQLite") and sym.startswith("rusqlite::"):
                return name
    user = [s for s, d in frames if not is_kernel(d)]
    if not user:
        return "kernel only (no user frame)"
    if any(re.search(r"mi_|malloc|free", s) for s in user[:3]):
        return "allocator (no stage above it)"
    return "other"


def kernel_class(frames):
    if not frames or not is_kernel(frames[0][1]):
        return None
    for sym, dso in frames:
        if not is_kernel(dso):
            break
        for name, pat in KERNEL:
            if pat.search(sym):
                return name
    return "kernel, other"


def main():
    per_decision = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None
    stage, kern, thread = Counter(), Counter(), Counter()
    stage_thread = Counter()
    n = 0
    for comm, frames in samples(sys.stdin):
        n += 1
        s = classify(frames)
        t = "writer" if comm.startswith("rein-store") else "worker"
        stage[s] += 1
        stage_thread[(s, t)] += 1
        thread[comm] += 1
        k = kernel_class(frames)
        if k:
            kern[k] += 1
    if not n:
        print("no samples")
        return
    unit = "" if per_decision is None else f"   µs/decision (of {per_decision:.1f})"
    print(f"{n} samples; threads: " + ", ".join(f"{c} {100 * v / n:.1f}%" for c, v in thread.most_common()))
    print()
    print(f"{'stage (kernel work charged to the stage that asked for it)':<58} {'share':>6} {'worker':>7} {'writer':>7}{unit}")
    for s, v in stage.most_common():
        line = f"{s:<58} {100 * v / n:>5.1f}% {100 * stage_thread[(s, 'worker')] / n:>6.1f}% {100 * stage_thread[(s, 'writer')] / n:>6.1f}%"
        if per_decision is not None:
            line += f"   {per_decision * v / n:>6.1f}"
        print(line)
    print()
    total_k = sum(kern.values())
    print(f"in the kernel: {100 * total_k / n:.1f}% of samples")
    for k, v in kern.most_common():
        line = f"  {k:<56} {100 * v / n:>5.1f}%"
        if per_decision is not None:
            line += f"   {per_decision * v / n:>6.1f} µs"
        print(line)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        pass
