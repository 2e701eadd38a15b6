"""Rein's Python SDK against Actra 0.7.8, side by side in one run.

    python bench/python/decide.py            # the numbers in BENCHMARKS.md
    python bench/python/decide.py --quick    # a smoke run (CI): every path once, no numbers to keep

Needs the `rein` package built into the interpreter running it and
`actra==0.7.8` (both in the venv `.ci/python` makes: `.tools/py-venv`).

What it measures, each a median over rounds that alternate Rein and Actra:

1. `policy.decide` in µs per call on generated policies of 100 and 1,000
   rules, against Actra's `Policy.evaluate` on the same rules written in
   Actra's format. Both policies hold N rules on the decided action, each
   comparing two input fields (`amount > i`, `currency == "Xi"`); only the
   last rule matches (`amount > 100`, `currency == "EUR"`), so Actra (first
   match) evaluates every rule, as Rein (every rule counts) does.
2. A guarded call: a trivial function under `@guard.action` (Rein) and
   `@runtime.admit` (Actra), minus the bare call, on the allowed path (the
   function runs) of the 100-rule policy.
3. Threads: 4 Python threads deciding on one shared Policy against one
   thread, in decisions per second (Rein releases the GIL while deciding).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time

import actra
import rein

ACTION = "refund"
DECIDED = {"order_id": "ord_abc123", "amount": 5000, "currency": "EUR"}
"""Matches only the last rule: block."""
ALLOWED = {"order_id": "ord_abc123", "amount": 50, "currency": "EUR"}
"""Matches no rule: the default, allow (in both engines)."""
ACTOR = {"id": "bot-1", "role": "agent"}


PER_ACTION = 10
"""Rules per action in the "spread" shape (as `crates/rein-bench` does)."""


def layout(rules: int, spread: bool) -> list[tuple[str, str, int, str]]:
    """`(action, rule id, amount above, currency)` of each rule, in file
    order. Spread: `rules / PER_ACTION` actions of `PER_ACTION` rules each,
    the decided action's last. Otherwise all rules on the decided action.
    On the decided action only its last rule matches `DECIDED`; every rule
    compares both fields (the first comparison holds, so both are read)."""
    per_action = PER_ACTION if spread else rules
    actions = [f"other{j}" for j in range(rules // per_action - 1)] + [ACTION]
    out = []
    for a, action in enumerate(actions):
        for k in range(per_action):
            i = a * per_action + k
            if action == ACTION and k == per_action - 1:
                out.append((action, f"r{i}", 100, "EUR"))
            else:
                out.append((action, f"r{i}", k, f"X{i}"))
    return out


def native_policy(rules: int, spread: bool = False) -> str:
    """Rein's native format."""
    plan = layout(rules, spread)
    lines = [
        "version: 1",
        "default: allow",
        "contracts:",
        "  actor: {id: string, role: string}",
        "  actions:",
    ]
    for action in dict.fromkeys(action for action, _, _, _ in plan):
        lines += [
            f"    {action}:",
            "      input: {order_id: string, amount: number, currency: string}",
        ]
    lines.append("rules:")
    for action, rule_id, above, currency in plan:
        lines += [
            f"  - id: {rule_id}",
            f"    action: {action}",
            f'    when: input.amount > {above} && input.currency == "{currency}"',
            "    effect: block",
        ]
    return "\n".join(lines) + "\n"


def actra_schema(rules: int, spread: bool = False) -> str:
    lines = ["version: 1", "actions:"]
    for action in dict.fromkeys(action for action, _, _, _ in layout(rules, spread)):
        lines += [
            f"  {action}:",
            "    fields:",
            "      order_id: string",
            "      amount: number",
            "      currency: string",
        ]
    lines += ["actor:", "  fields:", "    id: string", "    role: string", "snapshot:", "  fields:"]
    return "\n".join(lines) + "\n"


def actra_policy(rules: int, spread: bool = False) -> str:
    """The same rules in Actra's format (first match; default allow)."""
    lines = ["version: 1", "rules:"]
    for action, rule_id, above, currency in layout(rules, spread):
        lines += [
            f"  - id: {rule_id}",
            "    scope:",
            f"      action: {action}",
            "    when:",
            "      all:",
            "        - subject: {domain: action, field: amount}",
            "          operator: greater_than",
            f"          value: {{literal: {above}}}",
            "        - subject: {domain: action, field: currency}",
            "          operator: equals",
            f'          value: {{literal: "{currency}"}}',
            "    effect: block",
        ]
    return "\n".join(lines) + "\n"


def engines(rules: int, spread: bool):
    """Rein's Policy and Actra's for one shape, checked to agree."""
    policy = rein.Policy.from_yaml(native_policy(rules, spread), name=f"bench-{rules}.yaml")
    assert policy.rule_count == rules, policy.rule_count
    engine = actra.Actra.from_strings(actra_schema(rules, spread), actra_policy(rules, spread))
    check_agreement(policy, engine)
    return policy, engine


def actra_context(action_input: dict) -> dict:
    return {"action": {"type": ACTION, **action_input}, "actor": ACTOR, "snapshot": {}}


def per_call_us(fn, calls: int) -> float:
    """Microseconds per call of `fn` over a loop of `calls`."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000


def side_by_side(variants: dict, calls: int, rounds: int) -> dict:
    """The median of each variant's µs per call, the variants alternating
    round by round so that a noisy moment hits all of them."""
    samples = {name: [] for name in variants}
    for name, fn in variants.items():  # warm-up
        per_call_us(fn, max(calls // 10, 1))
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(per_call_us(fn, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def check_agreement(policy: rein.Policy, actra_engine) -> None:
    """Both engines must give the same answers, or the timing means nothing."""
    last = [rule for action, rule, _, _ in layout_of(policy) if action == ACTION][-1]
    d = policy.decide(ACTION, DECIDED, actor=ACTOR)
    a = actra_engine.evaluate(actra_context(DECIDED))
    assert d.effect == "block" and d.rules == [last], (d.effect, d.rules)
    assert a == {"effect": "block", "matched_rule": last}, a
    d = policy.decide(ACTION, ALLOWED, actor=ACTOR)
    a = actra_engine.evaluate(actra_context(ALLOWED))
    assert d.effect == "allow" and d.rules == [], (d.effect, d.rules)
    assert a["effect"] == "allow" and a.get("matched_rule") is None, a


def layout_of(policy: rein.Policy) -> list[tuple[str, str, int, str]]:
    spread = len(policy.actions) > 1
    return layout(policy.rule_count, spread)


SHAPES = [(100, True), (100, False), (1000, True), (1000, False)]
"""(rules, spread): 100 and 1,000 rules, spread over actions (10 on the
decided one) and all on the decided action."""


def shape_name(rules: int, spread: bool) -> str:
    on_action = PER_ACTION if spread else rules
    return f"{rules:,} rules, {on_action:,} on the action"


def calls_for(rules: int, spread: bool, calls: int) -> int:
    """About as long a loop for every shape."""
    on_action = PER_ACTION if spread else rules
    return max(calls * 100 // max(on_action, 100), 1)


def bench_decide(calls, rounds):
    rows = []
    for rules, spread in SHAPES:
        policy, engine = engines(rules, spread)
        decide, evaluate = policy.decide, engine.evaluate
        context = actra_context(DECIDED)
        medians = side_by_side(
            {
                "rein": lambda: decide(ACTION, DECIDED, actor=ACTOR),
                "actra": lambda: evaluate(context),
            },
            calls_for(rules, spread, calls),
            rounds,
        )
        rows.append((rules, spread, medians["rein"], medians["actra"]))
    return rows


def bench_guard(rules, spread, calls, rounds):
    policy, engine = engines(rules, spread)
    guard = rein.Guard(policy, actor=ACTOR)

    def bare(order_id: str, amount: float, currency: str) -> float:
        return amount

    rein_guarded = guard.action(ACTION)(bare)
    runtime = actra.ActraRuntime(engine)
    runtime.set_actor_resolver(lambda ctx: ACTOR)
    runtime.set_snapshot_resolver(lambda ctx: {})
    actra_guarded = runtime.admit(action_type=ACTION)(bare)

    args = ("ord_abc123", 50, "EUR")
    assert rein_guarded(*args) == 50 and actra_guarded(*args) == 50
    medians = side_by_side(
        {
            "bare": lambda: bare(*args),
            "rein": lambda: rein_guarded(*args),
            "actra": lambda: actra_guarded(*args),
        },
        calls_for(rules, spread, calls),
        rounds,
    )
    return medians["rein"] - medians["bare"], medians["actra"] - medians["bare"], medians["bare"]


def throughput(decide_once, threads: int, calls_per_thread: int) -> float:
    """Decisions per second with `threads` threads each deciding
    `calls_per_thread` times, all started together."""
    barrier = threading.Barrier(threads + 1)

    def work():
        barrier.wait()
        for _ in range(calls_per_thread):
            decide_once()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return threads * calls_per_thread / (time.perf_counter() - start)


def bench_threads(calls, rounds, threads=4):
    rows = []
    for rules, spread in SHAPES:
        policy, engine = engines(rules, spread)
        context = actra_context(DECIDED)
        variants = {
            "rein": lambda: policy.decide(ACTION, DECIDED, actor=ACTOR),
            "actra": lambda: engine.evaluate(context),
        }
        calls_here = calls_for(rules, spread, calls)
        for name, once in variants.items():
            samples = []
            for _ in range(rounds):
                one = throughput(once, 1, calls_here)
                many = throughput(once, threads, calls_here)
                samples.append((one, many, many / one))
            rows.append(
                (
                    rules,
                    spread,
                    name,
                    statistics.median(s[0] for s in samples),
                    statistics.median(s[1] for s in samples),
                    statistics.median(s[2] for s in samples),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: every path, few calls")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.quick:
        calls, rounds, thread_calls, thread_rounds = 200, 3, 500, 1
    else:
        calls, rounds, thread_calls, thread_rounds = 20_000, args.rounds, 50_000, 5

    print(
        f"rein {rein.__version__}, actra 0.7.8, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
        f"{'quick' if args.quick else f'{rounds} rounds'}"
    )

    print("\npolicy.decide against Actra's evaluate (µs per call, median)")
    print(f"{'policy':<34} {'rein':>8} {'actra':>8} {'actra/rein':>11}")
    for rules, spread, rein_us, actra_us in bench_decide(calls, rounds):
        print(
            f"{shape_name(rules, spread):<34} {rein_us:>8.2f} {actra_us:>8.2f} "
            f"{actra_us / rein_us:>10.2f}x"
        )

    print("\nguarded call, allowed (µs added to the bare call, median)")
    print(f"{'policy':<34} {'rein @guard.action':>19} {'actra @admit':>13} {'bare call':>10}")
    for rules, spread in SHAPES[:2]:
        rein_us, actra_us, bare_us = bench_guard(rules, spread, calls, rounds)
        print(f"{shape_name(rules, spread):<34} {rein_us:>19.2f} {actra_us:>13.2f} {bare_us:>10.2f}")

    print("\n4 threads on one shared Policy against 1 (decisions per second, median)")
    print(f"{'policy':<34} {'engine':>6} {'1 thread':>10} {'4 threads':>10} {'ratio':>6}")
    for rules, spread, name, one, many, ratio in bench_threads(thread_calls, thread_rounds):
        print(
            f"{shape_name(rules, spread):<34} {name:>6} {one:>10,.0f} {many:>10,.0f} {ratio:>5.2f}x"
        )


if __name__ == "__main__":
    main()
