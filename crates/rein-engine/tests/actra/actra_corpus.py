#!/usr/bin/env python3
"""Differential corpus for Rein's Actra mode.

Generates Actra schemas, policies, governance files and inputs (a fixed set of
edge cases plus seeded random ones), asks the real Actra engine (PyPI package
`actra`, version 0.7.8) for its answer to each, and writes one JSON object
per case:

    {"id", "category", "tags", "schema", "policy", "governance",
     "actra": {"ok": true} | {"ok": false, "error": "..."},
     "inputs": [{"input": {...}, "fits": bool, "actra": {...}}]}

`fits` says whether the input fits the schema (declared action type, declared
fields of the declared types, scalar values only); Rein answers the others
with a `contract` block, on purpose. `tags` name the deliberate deviations a
case exercises (see docs/actra-compat.md). The Rust side
(crates/rein-engine/tests/it/actra_diff.rs) decides the same cases and
compares.

Usage: actra_corpus.py [--seed N] [--random N] [--out FILE] [--no-actra]
"""

import argparse
import json
import random
import sys

ACTRA_VERSION = "0.7.8"

# ---------------------------------------------------------------------------
# YAML writing
# ---------------------------------------------------------------------------

PLAIN_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def q(s):
    """A string as a YAML scalar that every parser reads as that string."""
    if (
        isinstance(s, str)
        and s
        and s[0].isalpha()
        and all(c.isalnum() or c == "_" for c in s)
        and s.lower() not in PLAIN_WORDS
    ):
        return s
    return json.dumps(s)


def lit(v):
    """A literal value in YAML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, RawYaml):
        return v.text
    return q(v)


class RawYaml:
    """YAML text written as is (literal spellings under test)."""

    def __init__(self, text):
        self.text = text


def subject_yaml(d, f):
    return "{domain: %s, field: %s}" % (q(d), q(f))


def atom_yaml(a):
    d, f, op, val = a
    if isinstance(val, tuple) and val[0] == "subject":
        v = "{subject: %s}" % subject_yaml(val[1], val[2])
    elif isinstance(val, list):
        v = "{literal: [%s]}" % ", ".join(lit(x) for x in val)
    else:
        v = "{literal: %s}" % lit(val)
    return "{subject: %s, operator: %s, value: %s}" % (subject_yaml(d, f), op, v)


def rule_yaml(r, block):
    out = ["  - id: %s" % (r["id_raw"] if "id_raw" in r else q(r["id"]))]
    scope = r["scope"]
    if scope[0] == "action":
        out.append("    scope: {action: %s}" % q(scope[1]))
    elif scope[0] == "global":
        out.append("    scope: {global: %s}" % ("true" if scope[1] else "false"))
    elif scope[0] == "actor":
        out.append("    scope: {actor: %s}" % q(scope[1]))
    else:
        out.append("    scope: %s" % scope[1])
    kind, atoms = r["when"]
    if kind == "atom":
        if block:
            d, f, op, val = atoms[0]
            out.append("    when:")
            out.append("      subject:")
            out.append("        domain: %s" % q(d))
            out.append("        field: %s" % q(f))
            out.append("      operator: %s" % op)
            if isinstance(val, tuple) and val[0] == "subject":
                out.append("      value:")
                out.append("        subject: %s" % subject_yaml(val[1], val[2]))
            elif isinstance(val, list):
                out.append("      value: {literal: [%s]}" % ", ".join(lit(x) for x in val))
            else:
                out.append("      value:")
                out.append("        literal: %s" % lit(val))
        else:
            out.append("    when: %s" % atom_yaml(atoms[0]))
    elif kind == "raw":
        out.append("    when: %s" % atoms)
    else:
        out.append("    when:")
        out.append("      %s:" % kind)
        for a in atoms:
            out.append("        - %s" % atom_yaml(a))
    out.append("    effect: %s" % r["effect"])
    for k, v in r.get("extra", []):
        out.append("    %s: %s" % (k, v))
    return "\n".join(out) + "\n"


def policy_yaml(rules, block=False, version="1"):
    if not rules:
        return "version: %s\nrules: []\n" % version
    return "version: %s\nrules:\n" % version + "".join(rule_yaml(r, block) for r in rules)


def fields_yaml(fields, indent):
    pad = " " * indent
    if not fields:
        return " {}\n"
    return "\n" + "".join("%s%s: %s\n" % (pad, q(n), t) for n, t in fields)


def schema_yaml(s):
    out = "version: 1\nactions:\n" if s["actions"] else "version: 1\nactions: {}\n"
    for name, fields in s["actions"]:
        out += "  %s:\n    fields:%s" % (q(name), fields_yaml(fields, 6))
    out += "actor:\n  fields:%s" % fields_yaml(s["actor"], 4)
    out += "snapshot:\n  fields:%s" % fields_yaml(s["snapshot"], 4)
    return out


def gov_yaml(rules):
    out = "version: 1\ngovernance:\n  rules:\n"
    for g in rules:
        out += "    - id: %s\n" % q(g["id"])
        if "applies" in g:
            out += "      applies_to: {actions: [%s]}\n" % ", ".join(q(a) for a in g["applies"])
        out += "      select: {where: %s}\n" % g["where"]
        out += "      must: %s\n" % g["must"]
        out += "      error: %s\n" % q(g["error"])
    return out


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def fits(schema, inp):
    """Does an input fit the schema (Rein decides it instead of refusing)?"""
    if not isinstance(inp, dict) or set(inp) - {"action", "actor", "snapshot"}:
        return False
    action = inp.get("action")
    if not isinstance(action, dict):
        return False
    for dom in ("actor", "snapshot"):
        if dom in inp and not isinstance(inp[dom], dict):
            return False
    for dom in ("action", "actor", "snapshot"):
        for v in inp.get(dom, {}).values():
            if v is None or isinstance(v, (list, dict)):
                return False
    t = action.get("type")
    if not isinstance(t, str):
        return False
    decl = dict(schema["actions"])
    if t not in decl:
        return False

    def ok(fields, values):
        for n, ty in fields:
            if n not in values:
                continue
            v = values[n]
            if ty == "string" and not isinstance(v, str):
                return False
            if ty == "boolean" and not isinstance(v, bool):
                return False
            if ty == "number" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                return False
        return True

    return ok(decl[t], action) and ok(schema["actor"], inp.get("actor", {})) and ok(
        schema["snapshot"], inp.get("snapshot", {})
    )


STRINGS = ["a", "b", "USD", "EUR", "", "prod", "A", "a ", "ai", "true", "1"]
NUMBERS = [0, 1, -1, 5, 10, 99.5, 100, 100.0, 1000, 2.5, -0.0, 1e300, 2 ** 53, 2 ** 53 + 1, 1.5e-7]
BOOLS = [True, False]


def value_for(rng, ty, near=()):
    pool = {"string": STRINGS, "number": NUMBERS, "boolean": BOOLS}[ty]
    if near and rng.random() < 0.6:
        v = rng.choice(near)
        if ty == "number" and not isinstance(v, bool) and rng.random() < 0.5:
            v = v + rng.choice([-1, 1, 0.5, -0.5])
        return v
    return rng.choice(pool)


def wrong_value(rng, ty):
    choices = {
        "string": [5, True, 1.5],
        "number": ["5", True, "100"],
        "boolean": ["true", 1, 0],
    }[ty]
    return rng.choice(choices)


# ---------------------------------------------------------------------------
# Random policies
# ---------------------------------------------------------------------------

FIELD_NAMES = ["amount", "currency", "urgent", "count", "env", "flag", "limit", "name", "score", "tier"]
ACTION_NAMES = ["refund", "pay", "delete_user", "deploy", "scale.up", "send-mail"]
ACTOR_NAMES = ["role", "level", "agent", "trusted", "team"]
SNAP_NAMES = ["fraud_flag", "limit", "env", "load", "freeze"]
TYPES = ["string", "number", "boolean"]
OPS = {"number": ["equals", "not_equals", "greater_than", "less_than"], "string": ["equals", "not_equals"],
       "boolean": ["equals", "not_equals"]}


def random_schema(rng):
    actions = []
    for name in rng.sample(ACTION_NAMES, rng.randint(1, 3)):
        fields = [(f, rng.choice(TYPES)) for f in rng.sample(FIELD_NAMES, rng.randint(0, 4))]
        actions.append((name, fields))
    actor = [(f, rng.choice(TYPES)) for f in rng.sample(ACTOR_NAMES, rng.randint(0, 3))]
    snap = [(f, rng.choice(TYPES)) for f in rng.sample(SNAP_NAMES, rng.randint(0, 3))]
    return {"actions": actions, "actor": actor, "snapshot": snap}


def literal_for(rng, ty):
    if ty == "number":
        return rng.choice([0, 1, 5, 10, 99.5, 100, 1000, 2.5, -1, 2 ** 53 + 1])
    if ty == "string":
        return rng.choice(["a", "USD", "prod", "", "A", "ai"])
    return rng.choice(BOOLS)


def random_atom(rng, domains, literals):
    d = rng.choice([d for d in domains if domains[d]])
    f, ty = rng.choice(domains[d])
    op = rng.choice(OPS[ty])
    same = [(dd, ff) for dd in domains for ff, tt in domains[dd] if tt == ty and (dd, ff) != (d, f)]
    if same and rng.random() < 0.2:
        dd, ff = rng.choice(same)
        return (d, f, op, ("subject", dd, ff))
    v = literal_for(rng, ty)
    literals.setdefault((d, f, ty), []).append(v)
    return (d, f, op, v)


def random_rules(rng, schema, n):
    rules = []
    literals = {}
    for i in range(n):
        r = rng.random()
        if r < 0.6 and schema["actions"]:
            name, afields = rng.choice(schema["actions"])
            scope = ("action", name)
            domains = {"action": afields, "actor": schema["actor"], "snapshot": schema["snapshot"]}
        elif r < 0.95:
            scope = ("global", True)
            domains = {"action": [], "actor": schema["actor"], "snapshot": schema["snapshot"]}
        else:
            scope = ("actor", rng.choice(["support", "bot", "admin"]))
            domains = {"action": [], "actor": schema["actor"], "snapshot": schema["snapshot"]}
        if not any(domains.values()):
            continue
        k = rng.random()
        if k < 0.6:
            when = ("atom", [random_atom(rng, domains, literals)])
        else:
            when = ("all" if k < 0.8 else "any", [random_atom(rng, domains, literals) for _ in range(rng.randint(2, 4))])
        effect = rng.choice(["allow", "block", "require_approval", "block"])
        rules.append({"id": "r%d" % i, "scope": scope, "when": when, "effect": effect})
    return rules, literals


def random_inputs(rng, schema, literals, n, breaking=0.15):
    out = []
    decl = schema["actions"]
    for _ in range(n):
        inp = {}
        if decl:
            name, afields = rng.choice(decl)
        else:
            name, afields = "refund", []
        action = {"type": name}
        for f, ty in afields:
            if rng.random() < 0.75:
                action[f] = value_for(rng, ty, literals.get(("action", f, ty), ()))
        inp["action"] = action
        for dom in ("actor", "snapshot"):
            fields = schema[dom]
            if not fields and rng.random() < 0.5:
                continue
            vals = {}
            for f, ty in fields:
                if rng.random() < 0.75:
                    vals[f] = value_for(rng, ty, literals.get((dom, f, ty), ()))
            if rng.random() < 0.9:
                inp[dom] = vals
        if rng.random() < 0.1:
            inp["action"]["extra_field"] = rng.choice(["x", 1, False])
        if rng.random() < breaking:
            brk = rng.randint(0, 6)
            if brk == 0:
                del inp["action"]["type"]
            elif brk == 1:
                inp["action"]["type"] = rng.choice(["nope", "Refund", 5])
            elif brk == 2 and afields:
                f, ty = rng.choice(afields)
                inp["action"][f] = wrong_value(rng, ty)
            elif brk == 3:
                inp["action"]["x"] = rng.choice([None, [1], {"a": 1}])
            elif brk == 4 and schema["actor"]:
                f, ty = rng.choice(schema["actor"])
                inp.setdefault("actor", {})[f] = wrong_value(rng, ty)
            elif brk == 5:
                inp["snapshots"] = {}
            else:
                inp["actor"] = None
        out.append(inp)
    return out


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

BASE_SCHEMA = {
    "actions": [
        ("refund", [("amount", "number"), ("currency", "string"), ("urgent", "boolean")]),
        ("pay", []),
    ],
    "actor": [("role", "string"), ("level", "number")],
    "snapshot": [("fraud_flag", "boolean"), ("limit", "number")],
}


def case(cid, category, schema, policy, inputs=(), governance=None, tags=(), schema_text=None):
    return {
        "id": cid,
        "category": category,
        "tags": list(tags),
        "schema": schema_text if schema_text is not None else schema_yaml(schema),
        "policy": policy,
        "governance": governance,
        "inputs": [{"input": i, "fits": fits(schema, i) if schema else False} for i in inputs],
    }


def R(id, scope, when, effect="block", **kw):
    r = {"id": id, "scope": scope, "when": when, "effect": effect}
    r.update(kw)
    return r


def A(d, f, op, v):
    return ("atom", [(d, f, op, v)])


def base_inputs():
    ins = []
    for amount in [None, 0, 10, 100, 100.0, 1000, 2000, 99.5, 1e300]:
        for cur in [None, "USD", "EUR", ""]:
            a = {"type": "refund"}
            if amount is not None:
                a["amount"] = amount
            if cur is not None:
                a["currency"] = cur
            ins.append({"action": a})
    ins += [
        {"action": {"type": "refund", "urgent": True}, "actor": {"role": "admin", "level": 3},
         "snapshot": {"fraud_flag": True, "limit": 5}},
        {"action": {"type": "refund", "urgent": False}, "actor": {"role": "bot", "level": 9},
         "snapshot": {"fraud_flag": False, "limit": 5}},
        {"action": {"type": "pay"}, "snapshot": {"fraud_flag": True}},
        {"action": {"type": "pay"}, "actor": {"level": 5}, "snapshot": {"limit": 5}},
        {"action": {"type": "refund"}},
        {"action": {"type": "pay"}},
    ]
    return ins


def curated():
    S = BASE_SCHEMA
    cs = []
    ins = base_inputs()
    # Every operator on every type, each with present, missing and equal values.
    for ty, field, vals in [("number", "amount", [0, 10, 100, 99.5, 1e300, -1]), ("string", "currency", ["USD", "", "usd"]),
                            ("boolean", "urgent", [True, False])]:
        for op in ["equals", "not_equals", "greater_than", "less_than"]:
            for v in vals:
                pol = policy_yaml([R("r", ("action", "refund"), A("action", field, op, v))])
                cs.append(case("op-%s-%s-%s" % (ty, op, json.dumps(v)), "operators", S, pol, ins))
    # Booleans against numbers and strings that look like them.
    extra = [{"action": {"type": "refund", "urgent": x}} for x in [True, False]]
    cs.append(case("bool-true", "types", S, policy_yaml([R("r", ("action", "refund"), A("action", "urgent", "equals", True))]), extra + ins))
    # Type mismatches between field and literal are load errors in both.
    for field, v in [("amount", "5"), ("currency", 5), ("urgent", "true"), ("urgent", 1), ("currency", True), ("amount", True)]:
        cs.append(case("type-mismatch-%s-%s" % (field, json.dumps(v)), "types", S,
                       policy_yaml([R("r", ("action", "refund"), A("action", field, "equals", v))])))
    for field, op in [("currency", "greater_than"), ("urgent", "less_than"), ("currency", "less_than")]:
        cs.append(case("type-op-%s-%s" % (field, op), "types", S,
                       policy_yaml([R("r", ("action", "refund"), A("action", field, op, "a"))])))
    # in / not_in: Actra refuses them for every type; Rein reads them with a list.
    for op in ["in", "not_in"]:
        for field, vals in [("currency", ["USD", "EUR"]), ("amount", [10, 100]), ("urgent", [True])]:
            cs.append(case("in-list-%s-%s" % (op, field), "in_not_in", S,
                           policy_yaml([R("r", ("action", "refund"), A("action", field, op, vals))]), ins, tags=["in-list"]))
            cs.append(case("in-scalar-%s-%s" % (op, field), "in_not_in", S,
                           policy_yaml([R("r", ("action", "refund"), A("action", field, op, vals[0]))])))
    # Literal spellings.
    for text in ["0x10", "0o10", "010", "0b10", "1_000", "1e3", ".5", "+5", "-0x10", "+0x10", "1.", "12e400", "00",
                 "-010", "010.5", ".inf", "-.inf", "+.inf", ".nan", ".NaN", "-.nan", "16", "'16'", "!!int '16'",
                 "!!float 16", "9007199254740993", "-0", "1e-400", "0.1e+2", "1E3"]:
        pol = policy_yaml([R("r", ("action", "refund"), A("action", "amount", "equals", RawYaml(text))),
                           R("s", ("action", "refund"), A("action", "amount", "greater_than", RawYaml(text)))])
        amounts = [{"action": {"type": "refund", "amount": x}} for x in [16, 8, 2, 10, 1000, 0.5, 5, 1, 12, 0, -16, 9007199254740992, 1e300]]
        cs.append(case("literal-number-%s" % text, "literals", S, pol, amounts))
    for text in ["yes", "no", "on", "True", "TRUE", "'true'", "~", "null", "'null'", "''", "\"\"", "a b", "'a: b'",
                 "!!str 5", "!!str true", "USD", "'USD'"]:
        pol = policy_yaml([R("r", ("action", "refund"), A("action", "currency", "equals", RawYaml(text)))])
        curs = [{"action": {"type": "refund", "currency": x}} for x in ["yes", "no", "on", "True", "true", "~", "null", "", "a b", "a: b", "5", "USD"]]
        cs.append(case("literal-string-%s" % text, "literals", S, pol, curs))
    for text in ["true", "True", "TRUE", "false", "yes", "'true'", "!!bool true"]:
        pol = policy_yaml([R("r", ("action", "refund"), A("action", "urgent", "equals", RawYaml(text)))])
        cs.append(case("literal-bool-%s" % text, "literals", S, pol, [{"action": {"type": "refund", "urgent": x}} for x in [True, False]]))
    # Odd strings, written in every quoting style.
    odd = ["é", 'a"b', "tab\there", "line\nbreak", " lead", "trail ", "💸", "#hash", "a: b", "- dash", "*star", "&amp"]
    curs = [{"action": {"type": "refund", "currency": x}} for x in odd + ["a", ""]]
    for k, text in enumerate(odd):
        for style, lit_text in [("double", json.dumps(text)), ("single", "'" + text.replace("'", "''") + "'")]:
            if "\n" in text and style == "single":
                continue
            pol = policy_yaml([R("r", ("action", "refund"), A("action", "currency", "equals", RawYaml(lit_text)))])
            cs.append(case("string-%s-%d" % (style, k), "yaml_syntax", S, pol, curs))
    block_pol = """version: 1
rules:
  - id: block_literal
    scope:
      action: refund
    when:
      subject:
        domain: action
        field: currency
      operator: equals
      value:
        literal: |-
          line
          break
    effect: block
  - id: folded
    scope: {action: refund}
    when:
      subject: {domain: action, field: currency}
      operator: equals
      value:
        literal: >-
          a
          b
    effect: require_approval
"""
    cs.append(case("block-scalars", "yaml_syntax", S, block_pol, [{"action": {"type": "refund", "currency": x}} for x in ["line\nbreak", "a b", "line break", "a\nb"]]))
    anchors = """version: 1   # the version
rules:
  # a comment line
  - id: first
    scope: &refund_scope {action: refund}
    when: &big {subject: {domain: action, field: amount}, operator: greater_than, value: {literal: 100}}
    effect: block
  - id: second
    scope: *refund_scope
    when: {any: [*big, {subject: {domain: actor, field: role}, operator: equals, value: {literal: x}}]}
    effect: allow
  - "id": third
    "scope": {"global": true}
    "when": {"subject": {"domain": "snapshot", "field": "fraud_flag"}, "operator": "equals", "value": {"literal": true}}
    "effect": "block"
"""
    cs.append(case("anchors-comments-quoted-keys", "yaml_syntax", S, anchors, ins))
    json_pol = json.dumps({"version": 1, "rules": [{"id": "j", "scope": {"action": "refund"}, "effect": "block",
                          "when": {"subject": {"domain": "action", "field": "amount"}, "operator": "less_than", "value": {"literal": 5}}}]})
    cs.append(case("json-policy", "yaml_syntax", S, json_pol, ins))
    crlf = policy_yaml([R("r", ("action", "refund"), A("action", "amount", "greater_than", 10))]).replace("\n", "\r\n")
    cs.append(case("crlf", "yaml_syntax", S, crlf, ins))
    cs.append(case("bom", "yaml_syntax", S, "\ufeff" + policy_yaml([R("r", ("action", "refund"), A("action", "amount", "greater_than", 10))]), ins, tags=["bom"]))
    cs.append(case("tab-after-colon", "yaml_syntax", S, "version:\t1\nrules: []\n", ins[:3], tags=["yaml-tab"]))
    cs.append(case("schema-tab-after-colon", "yaml_syntax", None, "version: 1\n", schema_text="version:\t1\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n"))
    cs.append(case("schema-crlf", "yaml_syntax", S, policy_yaml([]), ins[:3], schema_text=schema_yaml(S).replace("\n", "\r\n")))
    # all / any, flat, with missing fields.
    allw = ("all", [("action", "amount", "greater_than", 10), ("actor", "role", "not_equals", "admin")])
    anyw = ("any", [("action", "amount", "greater_than", 10), ("actor", "role", "equals", "admin")])
    cs.append(case("all-2", "all_any", S, policy_yaml([R("r", ("action", "refund"), allw)]), ins))
    cs.append(case("any-2", "all_any", S, policy_yaml([R("r", ("action", "refund"), anyw)]), ins))
    cs.append(case("all-1", "all_any", S, policy_yaml([R("r", ("action", "refund"), ("all", allw[1][:1]))])))
    cs.append(case("any-0", "all_any", S, policy_yaml([R("r", ("action", "refund"), ("any", []))])))
    cs.append(case("all-nested", "all_any", S, policy_yaml([R("r", ("action", "refund"), ("raw",
              "{all: [%s, {any: [%s, %s]}]}" % (atom_yaml(allw[1][0]), atom_yaml(allw[1][0]), atom_yaml(allw[1][1]))))])))
    cs.append(case("all-and-any", "all_any", S, policy_yaml([R("r", ("action", "refund"), ("raw",
              "{all: [%s, %s], any: [%s, %s]}" % (atom_yaml(allw[1][0]), atom_yaml(allw[1][1]), atom_yaml(anyw[1][0]), atom_yaml(anyw[1][1]))))]), ins))
    cs.append(case("atom-and-all", "all_any", S, policy_yaml([R("r", ("action", "refund"), ("raw",
              atom_yaml(allw[1][0])[:-1] + ", all: [%s, %s]}" % (atom_yaml(anyw[1][0]), atom_yaml(anyw[1][1]))))]), ins))
    cs.append(case("not", "all_any", S, policy_yaml([R("r", ("action", "refund"), ("raw", "{not: %s}" % atom_yaml(allw[1][0])))])))
    many = ("all", [("action", "amount", "greater_than", i) for i in range(60)])
    cs.append(case("all-60", "all_any", S, policy_yaml([R("r", ("action", "refund"), many)]), ins))
    # Scopes.
    g = ("snapshot", "fraud_flag", "equals", True)
    for name, scope in [("global", ("global", True)), ("global-false", ("global", False)), ("actor", ("actor", "bot")),
                        ("action-and-global", ("raw", "{action: refund, global: true}")),
                        ("global-and-actor", ("raw", "{global: true, actor: x}")),
                        ("global-false-and-actor", ("raw", "{global: false, actor: x}")),
                        ("actor-int-and-global", ("raw", "{actor: 5, global: true}")),
                        ("action-int-and-global", ("raw", "{action: 5, global: true}")),
                        ("empty", ("raw", "{}")), ("string", ("raw", "refund")), ("global-yes", ("raw", "{global: yes}")),
                        ("global-True", ("raw", "{global: True}")), ("unknown-action", ("action", "nope")),
                        ("action-Refund", ("action", "Refund"))]:
        cs.append(case("scope-%s" % name, "scopes", S, policy_yaml([R("r", scope, ("atom", [g]))]), ins))
    cs.append(case("scope-global-reads-action", "scopes", S, policy_yaml([R("r", ("global", True), A("action", "amount", "equals", 1))])))
    cs.append(case("scope-actor-reads-action", "scopes", S, policy_yaml([R("r", ("actor", "x"), A("action", "amount", "equals", 1))])))
    cs.append(case("scope-other-action-field", "scopes", S, policy_yaml([R("r", ("action", "pay"), A("action", "amount", "equals", 1))])))
    # Rule order: first match, action rules before global ones whatever the file order.
    order = [
        R("g_block", ("global", True), A("snapshot", "fraud_flag", "equals", True), "block"),
        R("a_allow", ("action", "refund"), A("action", "amount", "less_than", 100), "allow"),
        R("a_block", ("action", "refund"), A("action", "amount", "less_than", 1000), "block"),
        R("a_appr", ("action", "refund"), A("action", "currency", "equals", "EUR"), "require_approval"),
        R("g_appr", ("global", True), A("actor", "role", "equals", "bot"), "require_approval"),
        R("g_allow", ("global", True), A("actor", "level", "greater_than", 1), "allow"),
    ]
    order_ins = []
    for amount in [None, 50, 500, 5000]:
        for cur in [None, "EUR"]:
            for fraud in [None, True, False]:
                for role in [None, "bot"]:
                    a = {"type": "refund"}
                    if amount is not None:
                        a["amount"] = amount
                    if cur:
                        a["currency"] = cur
                    i = {"action": a, "actor": {"level": 5}}
                    if role:
                        i["actor"]["role"] = role
                    if fraud is not None:
                        i["snapshot"] = {"fraud_flag": fraud}
                    order_ins.append(i)
                    order_ins.append(dict(i, action={"type": "pay"}))
    for k in range(6):
        rules = order[k:] + order[:k]
        cs.append(case("order-rot%d" % k, "order", S, policy_yaml(rules), order_ins))
    cs.append(case("order-reversed", "order", S, policy_yaml(list(reversed(order))), order_ins))
    # Defaults.
    cs.append(case("default-no-rules", "defaults", S, "version: 1\nrules: []\n", ins))
    cs.append(case("default-rules-null", "defaults", S, "version: 1\nrules:\n", ins))
    cs.append(case("default-only-pay", "defaults", S, policy_yaml([R("r", ("action", "pay"), A("actor", "role", "equals", "x"))]), ins))
    # Field-to-field comparisons.
    for l, op, r in [(("actor", "level"), "greater_than", ("snapshot", "limit")), (("action", "amount"), "less_than", ("snapshot", "limit")),
                     (("actor", "level"), "equals", ("snapshot", "limit")), (("actor", "level"), "not_equals", ("snapshot", "limit")),
                     (("actor", "level"), "equals", ("actor", "level")), (("actor", "role"), "equals", ("snapshot", "limit"))]:
        cs.append(case("ref-%s.%s-%s-%s.%s" % (l + (op,) + r), "field_refs", S,
                       policy_yaml([R("r", ("action", "refund"), A(l[0], l[1], op, ("subject",) + r))]), ins))
    # Inputs that do not fit the schema: Rein blocks them with `contract`.
    bad = [
        {}, {"actor": {"role": "x"}}, {"action": {"amount": 5}}, {"action": {"type": 5}}, {"action": {"type": "nope"}},
        {"action": {"type": "Refund"}}, {"action": {"type": "refund", "amount": "2000"}},
        {"action": {"type": "refund", "amount": True}}, {"action": {"type": "refund", "urgent": 1}},
        {"action": {"type": "refund", "currency": 5}}, {"action": {"type": "refund", "amount": None}},
        {"action": {"type": "refund", "x": [1]}}, {"action": {"type": "refund"}, "actor": {"x": {"a": 1}}},
        {"action": {"type": "refund"}, "actor": None}, {"action": {"type": "refund"}, "snapshot": 5},
        {"action": {"type": "refund"}, "snapshot": {"fraud_flag": "true"}}, {"action": None}, {"action": 5},
        {"action": {"type": "refund"}, "snapshots": {"fraud_flag": True}},
        {"action": {"type": "refund", "extra": "fine"}}, {"action": {"type": "pay", "amount": 5}},
    ]
    pol = policy_yaml([R("a", ("action", "refund"), A("action", "amount", "greater_than", 1000)),
                       R("g", ("global", True), A("snapshot", "fraud_flag", "equals", True))])
    cs.append(case("inputs-breaking", "inputs", S, pol, bad))
    # Schemas.
    good_pol = "version: 1\nrules: []\n"
    for name, text, tags in [
        ("no-version", "actions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("version-string", "version: abc\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("version-quoted", "version: '1'\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("version-negative", "version: -1\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("version-big", "version: 99999999999\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("version-hex", "version: 0x10\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("version-float", "version: 1.0\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("no-actions", "version: 1\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("actions-null", "version: 1\nactions:\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("action-no-fields", "version: 1\nactions:\n  pay: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("action-null", "version: 1\nactions:\n  pay:\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("fields-null", "version: 1\nactions:\n  pay:\n    fields:\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("actor-missing", "version: 1\nactions: {}\nsnapshot: {fields: {}}\n", []),
        ("actor-no-fields", "version: 1\nactions: {}\nactor: {}\nsnapshot: {fields: {}}\n", []),
        ("actor-fields-null", "version: 1\nactions: {}\nactor:\n  fields:\nsnapshot: {fields: {}}\n", []),
        ("snapshot-missing", "version: 1\nactions: {}\nactor: {fields: {}}\n", []),
        ("type-String", "version: 1\nactions: {a: {fields: {x: String}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("type-int", "version: 1\nactions: {a: {fields: {x: int}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("type-bool", "version: 1\nactions: {a: {fields: {x: bool}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("type-map", "version: 1\nactions: {a: {fields: {x: {type: number}}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("type-quoted", "version: 1\nactions: {a: {fields: {x: 'string'}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("type-null", "version: 1\nactions: {a: {fields: {x: }}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("unknown-keys", "version: 1\ndescription: x\nactions: {a: {fields: {}, doc: y}}\nactor: {fields: {}, z: 1}\nsnapshot: {fields: {}}\n", []),
        ("int-keys", "version: 1\nactions: {5: {fields: {7: number, true: string}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("duplicate-field", "version: 1\nactions:\n  a:\n    fields:\n      x: number\n      x: string\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", ["duplicate-key"]),
        ("duplicate-action", "version: 1\nactions:\n  a: {fields: {}}\n  a: {fields: {x: number}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", ["duplicate-key"]),
        ("duplicate-top", "version: 1\nactions: {}\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("empty", "", []),
        ("list", "[]\n", []),
        ("two-docs", "version: 1\nactions: {}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n---\nversion: 1\n", []),
        ("anchor", "version: 1\nactions:\n  a: &x {fields: {n: number}}\n  b: *x\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
        ("field-named-type", "version: 1\nactions: {a: {fields: {type: string}}}\nactor: {fields: {}}\nsnapshot: {fields: {}}\n", []),
    ]:
        cs.append(case("schema-%s" % name, "schemas", None, good_pol, tags=tags, schema_text=text))
    # `type` declared as a field can be read by rules.
    tschema = {"actions": [("a", [("type", "string"), ("n", "number")])], "actor": [], "snapshot": []}
    cs.append(case("type-field-read", "schemas", tschema,
                   policy_yaml([R("r", ("action", "a"), A("action", "type", "equals", "a"))]),
                   [{"action": {"type": "a"}}, {"action": {"type": "a", "n": 1}}]))
    # Policies.
    atom = ("action", "amount", "greater_than", 10)
    for name, text, tags in [
        ("no-version", "rules: []\n", []),
        ("no-rules", "version: 1\n", []),
        ("rules-map", "version: 1\nrules: {}\n", []),
        ("rule-no-id", "version: 1\nrules:\n  - scope: {action: refund}\n    when: %s\n    effect: block\n" % atom_yaml(atom), []),
        ("rule-no-when", "version: 1\nrules:\n  - id: r\n    scope: {action: refund}\n    effect: block\n", []),
        ("rule-no-scope", "version: 1\nrules:\n  - id: r\n    when: %s\n    effect: block\n" % atom_yaml(atom), []),
        ("rule-no-effect", "version: 1\nrules:\n  - id: r\n    scope: {action: refund}\n    when: %s\n" % atom_yaml(atom), []),
        ("when-null", "version: 1\nrules:\n  - id: r\n    scope: {action: refund}\n    when:\n    effect: block\n", []),
        ("rule-string", "version: 1\nrules:\n  - r\n", []),
        ("effect-requires-approval", policy_yaml([R("r", ("action", "refund"), ("atom", [atom]), "requires_approval")]), []),
        ("effect-Block", policy_yaml([R("r", ("action", "refund"), ("atom", [atom]), "Block")]), []),
        ("effect-quoted", policy_yaml([R("r", ("action", "refund"), ("atom", [atom]), "'block'")]), []),
        ("extra-keys", policy_yaml([R("r", ("action", "refund"), ("atom", [atom]), extra=[("priority", "5"), ("reason", "x")])]), []),
        ("duplicate-id", policy_yaml([R("r", ("action", "refund"), ("atom", [atom])), R("r", ("global", True), A("snapshot", "fraud_flag", "equals", True))]), ["duplicate-id"]),
        ("empty-id", policy_yaml([R("", ("action", "refund"), ("atom", [atom]))]), ["empty-id"]),
        ("null-id", policy_yaml([R("x", ("action", "refund"), ("atom", [atom]), id_raw="")]), ["empty-id"]),
        ("int-id", policy_yaml([R("x", ("action", "refund"), ("atom", [atom]), id_raw="5")]), []),
        ("hex-id", policy_yaml([R("x", ("action", "refund"), ("atom", [atom]), id_raw="0x10")]), []),
        ("tilde-id", policy_yaml([R("x", ("action", "refund"), ("atom", [atom]), id_raw="~")]), []),
        ("list-id", policy_yaml([R("x", ("action", "refund"), ("atom", [atom]), id_raw="[a]")]), []),
        ("unknown-domain", policy_yaml([R("r", ("action", "refund"), A("input", "amount", "equals", 1))]), []),
        ("unknown-field", policy_yaml([R("r", ("action", "refund"), A("action", "amt", "equals", 1))]), []),
        ("unknown-operator", policy_yaml([R("r", ("action", "refund"), A("action", "amount", "Equals", 1))]), []),
        ("operator-gte", policy_yaml([R("r", ("action", "refund"), A("action", "amount", "greater_than_or_equal", 1))]), []),
        ("literal-null", policy_yaml([R("r", ("action", "refund"), A("action", "amount", "equals", RawYaml("null")))]), []),
        ("literal-map", policy_yaml([R("r", ("action", "refund"), A("action", "amount", "equals", RawYaml("{a: 1}")))]), []),
        ("value-both", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: amount}, operator: equals, value: {literal: 1, subject: {domain: actor, field: role}}}"))]), []),
        ("value-subject-then-literal", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: amount}, operator: equals, value: {subject: {domain: actor, field: role}, literal: 1}}"))]), []),
        ("value-empty", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: amount}, operator: equals, value: {}}"))]), []),
        ("value-scalar", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: amount}, operator: equals, value: 5}"))]), []),
        ("subject-extra", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: amount, x: 1}, operator: equals, value: {literal: 1}}"))]), []),
        ("domain-int", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: 5, field: amount}, operator: equals, value: {literal: 1}}"))]), []),
        ("field-int", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: 5}, operator: equals, value: {literal: 1}}"))]), []),
        ("operator-int", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: {domain: action, field: amount}, operator: 5, value: {literal: 1}}"))]), []),
        ("when-list", policy_yaml([R("r", ("action", "refund"), ("raw", "[{domain: action, field: amount}, greater_than, {literal: 10}]"))]), ["list-form"]),
        ("subject-list", policy_yaml([R("r", ("action", "refund"), ("raw", "{subject: [action, amount], operator: greater_than, value: {literal: 10}}"))]), ["list-form"]),
        ("scope-list", policy_yaml([R("r", ("raw", "[refund]"), ("atom", [atom]))]), []),
        ("big-int-literal", policy_yaml([R("r", ("action", "refund"), A("action", "amount", "equals", RawYaml("18446744073709551615")))]), ["big-int"]),
        ("huge-int-literal", policy_yaml([R("r", ("action", "refund"), A("action", "amount", "equals", RawYaml("99999999999999999999")))]), []),
        ("two-errors", policy_yaml([R("r", ("action", "refund"), A("action", "nope", "equals", 1)), R("s", ("action", "nope"), A("action", "amount", "equals", 1))]), []),
    ]:
        cs.append(case("policy-%s" % name, "policies", S, text, ins[:6], tags=tags))
    # Governance.
    gpol = policy_yaml([
        R("a1", ("action", "refund"), A("action", "amount", "greater_than", 100), "block"),
        R("a2", ("action", "refund"), ("all", [("action", "currency", "not_equals", "USD"), ("actor", "role", "equals", "x")]), "require_approval"),
        R("p1", ("action", "pay"), A("actor", "level", "greater_than", ("subject", "snapshot", "limit")), "allow"),
        R("g1", ("global", True), A("snapshot", "fraud_flag", "equals", True), "block"),
        R("act", ("actor", "support"), A("actor", "role", "equals", "support"), "block"),
    ])
    G = lambda gid, must, where="{}", **kw: dict({"id": gid, "must": must, "where": where, "error": "bad " + gid}, **kw)
    gov_cases = [
        ("exists-id", [G("x", "{exists: true}", "{id: a1}")]),
        ("exists-missing", [G("x", "{exists: true}", "{id: nope}")]),
        ("not-exists", [G("x", "{exists: false}", "{id: a1}")]),
        ("forbid-allow", [G("x", "{forbid: true}", "{effect: allow}")]),
        ("forbid-false", [G("x", "{forbid: false}", "{effect: allow}")]),
        ("min-3-block", [G("x", "{min_count: 3}", "{effect: block}")]),
        ("min-4-block", [G("x", "{min_count: 4}", "{effect: block}")]),
        ("max-2-block", [G("x", "{max_count: 2}", "{effect: block}")]),
        ("max-3-block", [G("x", "{max_count: 3}", "{effect: block}")]),
        ("max-negative", [G("x", "{max_count: -1}", "{effect: block}")]),
        ("min-float", [G("x", "{min_count: 1.0}", "{effect: block}")]),
        ("min-hex", [G("x", "{min_count: 0x10}", "{effect: block}")]),
        ("effect-bogus", [G("x", "{exists: true}", "{effect: bogus}")]),
        ("global-true", [G("x", "{max_count: 0}", "{scope: {global: true}}")]),
        ("global-false-4", [G("x", "{max_count: 4}", "{scope: {global: false}}")]),
        ("global-false-3", [G("x", "{max_count: 3}", "{scope: {global: false}}")]),
        ("action-refund", [G("x", "{max_count: 1}", "{scope: {action: refund}}")]),
        ("action-and-global", [G("x", "{exists: true}", "{scope: {action: refund, global: true}}")]),
        ("action-and-not-global", [G("x", "{max_count: 2}", "{scope: {action: refund, global: false}}")]),
        ("scope-actor", [G("x", "{max_count: 4}", "{scope: {actor: support}}")]),
        ("scope-global-yes", [G("x", "{exists: true}", "{scope: {global: yes}}")]),
        ("when-domain-action", [G("x", "{max_count: 1}", "{when: {subject: {domain: action}}}")]),
        ("when-domain-actor", [G("x", "{max_count: 2}", "{when: {subject: {domain: actor}}}")]),
        ("when-domain-actor-3", [G("x", "{max_count: 3}", "{when: {subject: {domain: actor}}}")]),
        ("when-field-rhs", [G("x", "{exists: true}", "{when: {subject: {field: limit}}}")], ["governance-rhs"]),
        ("when-field-rhs-forbid", [G("x", "{forbid: true}", "{when: {subject: {domain: snapshot, field: limit}}}")], ["governance-rhs"]),
        ("when-field-lhs", [G("x", "{exists: true}", "{when: {subject: {domain: actor, field: level}}}")]),
        ("when-empty", [G("x", "{max_count: 4}", "{when: {}}")]),
        ("allowed-all", [G("x", "{allowed_fields: [action.amount, action.currency, actor.role, actor.level, snapshot.fraud_flag]}")], ["governance-rhs"]),
        ("allowed-all-rhs", [G("x", "{allowed_fields: [action.amount, action.currency, actor.role, actor.level, snapshot.fraud_flag]}", "{id: p1}")], ["governance-rhs"]),
        ("allowed-missing-role", [G("x", "{allowed_fields: [action.amount, action.currency, actor.level, snapshot.fraud_flag]}")]),
        ("allowed-group", [G("x", "{allowed_fields: [action.currency]}", "{id: a2}")]),
        ("allowed-int", [G("x", "{allowed_fields: [5]}", "{id: a1}")]),
        ("allowed-domain-only", [G("x", "{allowed_fields: [action]}", "{id: a1}")]),
        ("where-null", [G("x", "{max_count: 4}", "")]),
        ("where-unknown-key", [G("x", "{max_count: 4}", "{idd: a1}")]),
        ("applies-refund", [G("x", "{exists: false}", "{id: g1}", applies=["refund"])]),
        ("applies-nope", [G("x", "{exists: false}", "{id: g1}", applies=["nope"])]),
        ("applies-actor-name", [G("x", "{exists: false}", "{id: g1}", applies=["support"])]),
        ("applies-empty", [G("x", "{exists: false}", "{id: g1}", applies=[])]),
        ("two-constraints", [G("x", "{exists: true, forbid: true}", "{id: a1}")]),
        ("two-constraints-2", [G("x", "{forbid: true, max_count: 5}", "{id: a1}")]),
        ("bad-then-good", [G("x", "{exists: 'x', forbid: true}", "{id: a1}")]),
        ("must-empty", [G("x", "{}", "{id: a1}")]),
        ("must-unknown", [G("x", "{foo: 1}", "{id: a1}")]),
        ("two-violations", [G("x", "{exists: false}", "{id: a1}"), G("y", "{exists: false}", "{id: g1}")]),
        ("duplicate-gov-id", [G("x", "{exists: false}", "{id: a1}"), G("x", "{exists: false}", "{id: a1}")]),
        ("id-int", [G("x", "{exists: true}", "{id: 5}")]),
    ]
    for item in gov_cases:
        name, grules = item[0], item[1]
        tags = item[2] if len(item) > 2 else []
        cs.append(case("gov-%s" % name, "governance", S, gpol, ins[:4], governance=gov_yaml(grules), tags=tags))
    for name, text in [
        ("no-version", "governance:\n  rules: []\n"),
        ("no-governance", "version: 1\n"),
        ("rules-null", "version: 1\ngovernance:\n  rules:\n"),
        ("governance-null", "version: 1\ngovernance:\n"),
        ("empty", ""),
        ("no-select", "version: 1\ngovernance:\n  rules:\n    - id: x\n      must: {exists: true}\n      error: e\n"),
        ("select-empty", "version: 1\ngovernance:\n  rules:\n    - id: x\n      select: {}\n      must: {exists: true}\n      error: e\n"),
        ("no-error", "version: 1\ngovernance:\n  rules:\n    - id: x\n      select: {where: {}}\n      must: {exists: true}\n"),
        ("no-id", "version: 1\ngovernance:\n  rules:\n    - select: {where: {}}\n      must: {exists: true}\n      error: e\n"),
        ("applies-no-actions", "version: 1\ngovernance:\n  rules:\n    - id: x\n      applies_to: {}\n      select: {where: {}}\n      must: {exists: true}\n      error: e\n"),
        ("applies-null", "version: 1\ngovernance:\n  rules:\n    - id: x\n      applies_to:\n      select: {where: {id: g1}}\n      must: {exists: false}\n      error: e\n"),
        ("error-null", "version: 1\ngovernance:\n  rules:\n    - id: x\n      select: {where: {id: a1}}\n      must: {exists: false}\n      error:\n"),
    ]:
        cs.append(case("gov-file-%s" % name, "governance", S, gpol, governance=text))
    return cs


def random_cases(rng, n):
    cs = []
    for k in range(n):
        schema = random_schema(rng)
        rules, literals = random_rules(rng, schema, rng.randint(0, 7))
        block = rng.random() < 0.3
        pol = policy_yaml(rules, block=block)
        inputs = random_inputs(rng, schema, literals, rng.randint(8, 16))
        cs.append(case("random-%d" % k, "random", schema, pol, inputs))
        if k % 4 == 0 and rules:
            grules = random_governance(rng, schema, rules)
            cs.append(case("random-gov-%d" % k, "random_governance", schema, pol, inputs[:2],
                           governance=gov_yaml(grules), tags=["governance-rhs"]))
    return cs


def random_governance(rng, schema, rules):
    out = []
    fields = ["%s.%s" % (d, f) for d in ("actor", "snapshot") for f, _ in schema[d]]
    fields += ["action.%s" % f for _, fs in schema["actions"] for f, _ in fs]
    for i in range(rng.randint(1, 3)):
        filters = []
        if rng.random() < 0.3:
            filters.append("effect: %s" % rng.choice(["allow", "block", "require_approval"]))
        if rng.random() < 0.3:
            filters.append("id: %s" % rng.choice([r["id"] for r in rules]))
        if rng.random() < 0.3:
            if rng.random() < 0.5 or not schema["actions"]:
                filters.append("scope: {global: %s}" % rng.choice(["true", "false"]))
            else:
                filters.append("scope: {action: %s}" % q(rng.choice(schema["actions"])[0]))
        if rng.random() < 0.3 and fields:
            d, f = rng.choice(fields).split(".", 1)
            filters.append("when: {subject: {domain: %s, field: %s}}" % (d, q(f)))
        must = rng.choice([
            "{exists: true}", "{exists: false}", "{forbid: true}", "{min_count: %d}" % rng.randint(0, 3),
            "{max_count: %d}" % rng.randint(0, 3),
            "{allowed_fields: [%s]}" % ", ".join(rng.sample(fields, rng.randint(0, len(fields)))) if fields else "{exists: true}",
        ])
        g = {"id": "g%d" % i, "where": "{%s}" % ", ".join(filters), "must": must, "error": "violated g%d" % i}
        if rng.random() < 0.2 and schema["actions"]:
            g["applies"] = [rng.choice(schema["actions"])[0]]
        out.append(g)
    return out


# ---------------------------------------------------------------------------
# Asking Actra
# ---------------------------------------------------------------------------

def ask_actra(cases):
    from actra import Actra  # noqa: imported late so --no-actra works without it

    for c in cases:
        try:
            policy = Actra.from_strings(c["schema"], c["policy"], c["governance"])
            c["actra"] = {"ok": True}
        except Exception as e:  # Actra raises ValueError and its own errors
            c["actra"] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            policy = None
        for i in c["inputs"]:
            if policy is None:
                continue
            try:
                d = policy.evaluate(i["input"])
                i["actra"] = {"effect": d["effect"], "matched_rule": d.get("matched_rule")}
            except Exception as e:
                i["actra"] = {"error": "%s: %s" % (type(e).__name__, e)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, default=400, help="number of random policies")
    ap.add_argument("--out", default="-")
    ap.add_argument("--no-actra", action="store_true", help="write the corpus without asking Actra")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cases = curated() + random_cases(rng, args.random)
    if not args.no_actra:
        import importlib.metadata

        found = importlib.metadata.version("actra")
        if found != ACTRA_VERSION:
            sys.exit("actra %s is installed; the corpus is checked against %s" % (found, ACTRA_VERSION))
        ask_actra(cases)
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    for c in cases:
        out.write(json.dumps(c, sort_keys=True) + "\n")
    if out is not sys.stdout:
        out.close()
    n_inputs = sum(len(c["inputs"]) for c in cases)
    print("%d cases, %d inputs" % (len(cases), n_inputs), file=sys.stderr)


if __name__ == "__main__":
    main()
