#!/usr/bin/env python3
"""Inclusive instructions per call of the functions whose name matches
REGEX, from a callgrind output file (summed over every call site):

    python3 bench/callgrind_per_call.py callgrind.out 'Prepared::decide$'

Instruction counts do not depend on what else the machine runs, so this
compares two builds on a busy shared machine (bench/state_engine.sh).
"""
import re
import sys

path, pattern = sys.argv[1], re.compile(sys.argv[2])
names = {}
def name(kind, text):
    m = re.match(r"\((\d+)\)(?: (.*))?", text)
    if not m:
        return text
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "?")
calls, cost, pending, cur = {}, {}, None, None
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        name("fn", line[3:])
        pending = None
    elif line.startswith("cfn="):
        cur = name("cfn", line[4:])
    elif line.startswith("calls="):
        pending = (cur, int(line[6:].split()[0]))
    elif pending and line and (line[0].isdigit() or line[0] in "+-*"):
        f, n = pending
        parts = line.split()
        ir = int(parts[1]) if len(parts) > 1 else 0
        calls[f] = calls.get(f, 0) + n
        cost[f] = cost.get(f, 0) + ir
        pending = None
for f in sorted(calls):
    if pattern.search(f) and calls[f]:
        print(f"{cost[f] / calls[f]:10.1f} Ir/call  {calls[f]:>9} calls  {f}")
