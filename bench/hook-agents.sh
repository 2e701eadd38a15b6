#!/usr/bin/env bash
# Whole-process cost of `rein hook <agent>` for every agent Rein reads, side
# by side: each agent's own shell event for the same command line
# (`git status && cargo test --workspace`: two parts, two audit records),
# the same policy (the coding-agent contracts, the Claude Code example and
# 1,000 generated shell rules, as bench/hook.sh), in process with the
# compiled-policy cache, each agent with a store of its own.
#
#   bash bench/hook-agents.sh      # needs hyperfine (Debian package)
#
# The events: Claude Code `PreToolUse` Bash, Codex `PreToolUse` Bash, Gemini
# CLI `BeforeTool` run_shell_command, Cursor `beforeShellExecution`. Each is
# taken from the events recorded from the real program when they are in the
# tree (crates/rein-hooks/tests/fixtures/<agent>/), command and folder
# replaced, else built here in the agent's documented shape; the script says
# which. An agent whose events this build cannot decide yet is left out, and
# said so (its answer must be a real `allow` before anything is timed).
#
# Rounds (hyperfine over every agent, the order rotated each round) against
# a machine whose load moves: per agent, the median of the rounds' medians,
# its ratio to Claude Code's, and the CPU time (user + system) per event.
#
# Knobs: RUNS (hyperfine runs per round and agent, default 200), ROUNDS
# (default 3), REIN (a rein binary to time instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-200}"
ROUNDS="${ROUNDS:-3}"
OUT=target/bench-hook-agents
rm -rf "$OUT" && mkdir -p "$OUT/project" "$OUT/rounds"
if ! command -v hyperfine >/dev/null; then
  echo "hyperfine is missing: apt-get install hyperfine" >&2
  exit 1
fi
if [ -z "${REIN:-}" ]; then
  cargo build -q --release -p rein-cli
  REIN="$PWD/target/release/rein"
fi
echo "rein: $REIN ($("$REIN" --version))"

python3 - "$OUT/rules.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nrules:\n")
    for i in range(1000):
        f.write(f"  - id: gen_{i}\n    action: shell.exec\n"
                f"    when: input.program == \"tool_{i}\" && input.args.exists(a, a == \"x{i}\")\n"
                f"    effect: block\n    reason: generated rule {i}\n")
PY
POLICY=(-p policies/agents/coding-agent.yaml -p examples/claude-code/policy.yaml -p "$OUT/rules.yaml")
"$REIN" validate "${POLICY[@]}" >/dev/null

# One event per agent: `agent file source` lines in $OUT/events.txt.
python3 - "$OUT" "$PWD/$OUT/project" <<'PY'
import glob, json, os, sys
out, project = sys.argv[1], sys.argv[2]
command = "git status && cargo test --workspace"
built = {
    "claude-code": {"session_id": "bench", "cwd": project, "hook_event_name": "PreToolUse",
                    "permission_mode": "default", "tool_name": "Bash",
                    "tool_input": {"command": command, "description": "x"}, "tool_use_id": "toolu_bench"},
    "codex": {"session_id": "bench", "turn_id": "bench-turn", "cwd": project, "hook_event_name": "PreToolUse",
              "model": "gpt-5", "permission_mode": "default", "tool_name": "Bash",
              "tool_input": {"command": command}, "tool_use_id": "call_bench"},
    "gemini": {"session_id": "bench", "cwd": project, "hook_event_name": "BeforeTool",
               "timestamp": "2026-12-06T00:00:00.000Z", "tool_name": "run_shell_command",
               "tool_input": {"command": command, "description": "x"}},
    "cursor": {"conversation_id": "bench", "generation_id": "bench-gen", "hook_event_name": "beforeShellExecution",
               "command": command, "cwd": project, "workspace_roots": [project]},
}
# The recorded shell event of each agent, if its folder has one: the main
# agent's (`PreToolUse-Bash.json`) before any other (a sub-agent's).
recorded = {
    "claude-code": ["PreToolUse-Bash.json", "PreToolUse-Bash*.json"],
    "codex": ["PreToolUse-Bash.json", "PreToolUse-Bash*.json"],
    "gemini": ["BeforeTool-run_shell_command.json", "BeforeTool-run_shell_command*.json"],
    "cursor": ["beforeShellExecution.json", "beforeShellExecution*.json"],
}
with open(os.path.join(out, "events.txt"), "w") as listing:
    for agent, event in built.items():
        source = "built by this script"
        for pattern in recorded[agent]:
            found = sorted(glob.glob(f"crates/rein-hooks/tests/fixtures/{agent}/{pattern}"))
            if found:
                event = json.load(open(found[0]))
                if "tool_input" in event:
                    event["tool_input"]["command"] = command
                else:
                    event["command"] = command
                for key in ("cwd",):
                    if key in event:
                        event[key] = project
                if "workspace_roots" in event:
                    event["workspace_roots"] = [project]
                source = f"recorded: {found[0]}"
                break
        path = os.path.join(out, f"{agent}.json")
        json.dump(event, open(path, "w"))
        listing.write(f"{agent} {path} {source}\n")
PY

AGENTS=()
while read -r agent file source; do
  answer=$("$REIN" hook "$agent" "${POLICY[@]}" --db "$OUT/$agent.db" --cache-dir "$OUT/cache" <"$file" 2>&1 || true)
  if grep -q '"allow"' <<<"$answer"; then
    AGENTS+=("$agent")
    echo "$agent: event $source"
  else
    echo "$agent: LEFT OUT, this build does not decide its event ($source): $answer"
  fi
done <"$OUT/events.txt"
case " ${AGENTS[*]} " in
  *" claude-code "*) ;;
  *) echo "the Claude Code hook does not allow its event: nothing to compare with" >&2; exit 1 ;;
esac

for round in $(seq "$ROUNDS"); do
  # Rotate the order, so that no agent always runs first (or last).
  shift_by=$(( (round - 1) % ${#AGENTS[@]} ))
  ORDER=("${AGENTS[@]:$shift_by}" "${AGENTS[@]:0:$shift_by}")
  COMMANDS=()
  for agent in "${ORDER[@]}"; do
    COMMANDS+=(-n "$agent" "sh -c '$REIN hook $agent ${POLICY[*]} --db $OUT/$agent.db --cache-dir $OUT/cache < $OUT/$agent.json'")
  done
  echo "== round $round of $ROUNDS (${ORDER[*]}), $RUNS runs each, load: $(cut -d' ' -f1-3 /proc/loadavg)"
  # hyperfine's warnings (outliers on a shared machine) are kept aside,
  # shown only if it fails.
  if ! hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/rounds/$round.json" "${COMMANDS[@]}" \
    >"$OUT/rounds/$round.log" 2>&1; then
    cat "$OUT/rounds/$round.log" >&2
    exit 1
  fi
done

python3 - "$OUT/rounds" <<'PY'
import glob, json, statistics, sys
by = {}
for path in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    for r in json.load(open(path))["results"]:
        by.setdefault(r["command"], []).append(r)
base = statistics.median(r["median"] for r in by["claude-code"])
print(f"{'agent':<12} {'median':>9} {'vs claude-code':>15} {'CPU/event':>10} {'user':>8} {'system':>8}  round medians")
for agent, rs in by.items():
    median = statistics.median(r["median"] for r in rs)
    user = statistics.median(r["user"] for r in rs)
    system = statistics.median(r["system"] for r in rs)
    rounds = " ".join(f"{r['median'] * 1e3:.2f}" for r in rs)
    print(f"{agent:<12} {median * 1e3:7.2f} ms {median / base:14.3f}x {(user + system) * 1e3:7.2f} ms"
          f" {user * 1e3:5.2f} ms {system * 1e3:5.2f} ms  {rounds}")
PY
