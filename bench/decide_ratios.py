#!/usr/bin/env python3
"""Medians and ratios of `cargo bench -p rein-bench --bench decide`.

Reads criterion's `<target>/criterion/decide*/<variant>/<rules>/new/estimates.json`
(the last run of each benchmark) and prints the tables BENCHMARKS.md gives
for issue 17: the median per decision of every variant and size, then each
target's ratio and whether it is met.

    cargo bench -p rein-bench --bench decide
    python3 bench/decide_ratios.py                  # plain text
    python3 bench/decide_ratios.py --markdown       # tables for BENCHMARKS.md
    python3 bench/decide_ratios.py --criterion some/target/criterion

Each estimate is criterion's median (its `median.point_estimate`, in ns).
The `decide_threads` variants `<path>_1t` / `<path>_2t` are both the time per
decision of the combined throughput (see benches/decide.rs), so `_1t / _2t`
is the throughput of two threads over one. The script warns when the files
it reads were written more than 20 minutes apart (a filtered run leaves the
other benchmarks' older results in place).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Variants of the `decide` group, in table order, with what they time.
VARIANTS = [
    ("floor_typed", "floor, typed request"),
    ("rein_prepared", "Rein `Prepared::decide`"),
    ("rein_request", "Rein `Policy::decide(&Request)`"),
    ("floor_json", "floor from JSON text"),
    ("rein_json", "Rein `Policy::decide_json_str`"),
    ("rein_unknown", "Rein, unknown action refused"),
    ("cedar_sharded", "Cedar, one set per action"),
    ("cedar_sharded_json", "Cedar per action, from JSON text"),
    ("cedar_one_set", "Cedar, one `PolicySet`"),
]
THREAD_PATHS = ["rein_prepared", "rein_request", "rein_json", "rein_unknown", "floor_typed", "floor_json"]
SMALL, LARGE = 1_000, 10_000
STALE_SECONDS = 20 * 60


def default_dir():
    target = os.environ.get("CARGO_TARGET_DIR")
    root = Path(__file__).resolve().parent.parent
    return Path(target) / "criterion" if target else root / "target" / "criterion"


def load(criterion):
    """{(group, function, rules): (median ns, mtime)} for the decide groups."""
    out = {}
    for est in sorted(criterion.glob("decide*/*/*/new/estimates.json")):
        bench = est.parent / "benchmark.json"
        try:
            meta = json.loads(bench.read_text())
            group, function, value = meta["group_id"], meta["function_id"], meta["value_str"]
        except (OSError, ValueError, KeyError):
            group, function, value = est.parts[-5], est.parts[-4], est.parts[-3]
        if group not in ("decide", "decide_threads"):
            continue
        try:
            rules = int(value)
        except ValueError:
            continue
        median = json.loads(est.read_text())["median"]["point_estimate"]
        out[(group, function, rules)] = (median, est.stat().st_mtime)
    return out


def fmt_time(ns):
    if ns is None:
        return "—"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs"
    return f"{ns / 1_000_000:.2f} ms"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(value, ok):
    if value is None:
        return "not measured"
    return "met" if ok(value) else "**not met**"


def table(rows, markdown):
    """Rows of cells, the first row the header."""
    if markdown:
        # Text columns (the label, a target) left, numbers right.
        text = [i for i in range(len(rows[0])) if i == 0 or rows[0][i] == "target"]
        rule = "|".join("---" if i in text else "---:" for i in range(len(rows[0])))
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + rule + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--criterion", type=Path, default=default_dir(), help="criterion's output directory")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()

    data = load(args.criterion)
    if not data:
        sys.exit(f"no decide results under {args.criterion}: run `cargo bench -p rein-bench --bench decide` first")

    def get(function, rules, group="decide"):
        v = data.get((group, function, rules))
        return None if v is None else v[0]

    sizes = sorted({rules for (group, _, rules) in data if group == "decide"})
    md = args.markdown

    # Medians.
    rows = [["per decision, median"] + [f"{n:,} rules" for n in sizes]]
    for key, label in VARIANTS:
        if any(get(key, n) is not None for n in sizes):
            rows.append([f"{label} (`{key}`)" if md else f"{label} ({key})"] + [fmt_time(get(key, n)) for n in sizes])
    print(table(rows, md))
    print()

    # Ratios, each against its target (checked at the sizes listed).
    prep = {n: get("rein_prepared", n) for n in sizes}
    targets = []
    targets.append(("prepared", "≤ 200 ns (1k), ≤ 250 ns (10k)", {n: prep[n] for n in sizes}, "time",
                    lambda n, v: v <= (200 if n <= SMALL else 250), [SMALL, LARGE]))
    targets.append(("prepared / floor_typed", "", {n: ratio(prep[n], get("floor_typed", n)) for n in sizes}, "ratio",
                    None, []))
    targets.append(("request / prepared", "≤ 1.5×", {n: ratio(get("rein_request", n), prep[n]) for n in sizes}, "ratio",
                    lambda n, v: v <= 1.5, [SMALL, LARGE]))
    targets.append(("json / floor_json", "≤ 1.1×", {n: ratio(get("rein_json", n), get("floor_json", n)) for n in sizes},
                    "ratio", lambda n, v: v <= 1.1, [SMALL, LARGE]))
    targets.append(("cedar_sharded / prepared", "≥ 60× (1k)",
                    {n: ratio(get("cedar_sharded", n), prep[n]) for n in sizes}, "ratio", lambda n, v: v >= 60, [SMALL]))
    targets.append(("unknown action refused", "≤ 150 ns", {n: get("rein_unknown", n) for n in sizes}, "time",
                    lambda n, v: v <= 150, sizes))
    rows = [["", "target"] + [f"{n:,} rules" for n in sizes] + ["verdict"]]
    for label, target, values, kind, ok, checked in targets:
        cells = [fmt_time(values.get(n)) if kind == "time" else fmt_ratio(values.get(n)) for n in sizes]
        if ok is None:
            status = ""
        else:
            vs = [values.get(n) for n in checked]
            status = "not measured" if any(v is None for v in vs) else (
                "met" if all(ok(n, values[n]) for n in checked) else "**not met**")
        rows.append([label, target] + cells + [status if md else status.replace("**", "")])
    print(table(rows, md))
    print()

    # Growth from 1,000 to 10,000 rules.
    rows = [["10,000 rules / 1,000 rules", "target", "ratio", "verdict"]]
    for key, _ in VARIANTS:
        r = ratio(get(key, LARGE), get(key, SMALL))
        if r is None:
            continue
        target, status = ("≤ 1.25×", verdict(r, lambda v: v <= 1.25)) if key == "rein_prepared" else ("", "")
        rows.append([key, target, fmt_ratio(r), status if md else status.replace("**", "")])
    print(table(rows, md))
    print()

    # Two threads on one shared policy (or floor).
    thread_sizes = sorted({rules for (group, _, rules) in data if group == "decide_threads"})
    if thread_sizes:
        rows = [["two threads / one, throughput", "target"] + [f"{n:,} rules" for n in thread_sizes] + ["verdict"]]
        for path in THREAD_PATHS:
            rs = {n: ratio(get(f"{path}_1t", n, "decide_threads"), get(f"{path}_2t", n, "decide_threads"))
                  for n in thread_sizes}
            if all(v is None for v in rs.values()):
                continue
            floor = path.startswith("floor")
            cells = []
            for n in thread_sizes:
                one = get(f"{path}_1t", n, "decide_threads")
                two = get(f"{path}_2t", n, "decide_threads")
                cells.append("—" if rs[n] is None else f"{fmt_ratio(rs[n])} ({fmt_time(one)} → {fmt_time(two)})")
            if floor:
                target, status = "(reference)", ""
            else:
                target = "≥ 1.9×"
                status = "not measured" if any(v is None for v in rs.values()) else (
                    "met" if all(v >= 1.9 for v in rs.values()) else "**not met**")
            rows.append([path, target] + cells + [status if md else status.replace("**", "")])
        print(table(rows, md))
        if md:
            print()  # a line right after a Markdown table would be read as a row
        print("(in parentheses: time per decision of the combined throughput, one thread → two)")
        print()

    times = [m for (_, m) in data.values()]
    span = max(times) - min(times)
    newest = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(max(times)))
    print(f"{len(data)} results from {args.criterion}, newest {newest}")
    if span > STALE_SECONDS:
        print(f"warning: the results were written {span / 60:.0f} minutes apart: some may be from an older run",
              file=sys.stderr)


if __name__ == "__main__":
    main()
