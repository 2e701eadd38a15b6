"""`policy.decide` in a loop, for counting instructions per call with
callgrind (repeatable on a shared machine, unlike timings):

    valgrind --tool=callgrind python bench/python/decide_loop.py 100 spread 10000
    valgrind --tool=callgrind python bench/python/decide_loop.py 100 spread 30000

The difference of the two runs' totals over the 20,000 extra calls is the
cost of one call (loading the interpreter and the policy cancels out).
Shapes as in `decide.py`: `spread` (10 rules per action) or `all` (every
rule on the decided action)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import decide as bench  # noqa: E402
import rein  # noqa: E402


def main() -> None:
    rules, shape, calls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if shape not in ("spread", "all"):
        raise SystemExit("shape: spread or all")
    policy = rein.Policy.from_yaml(bench.native_policy(rules, shape == "spread"))
    decide, action, request, actor = policy.decide, bench.ACTION, bench.DECIDED, bench.ACTOR
    for _ in range(calls):
        decide(action, request, actor=actor)


if __name__ == "__main__":
    main()
