#!/usr/bin/env bash
# In-process decisions with and without stateful control, side by side:
# crates/rein-engine/benches/state.rs built here (every group) and on BASE,
# the commit before the feature (only the stateless refund group, built
# with `--cfg rein_baseline`), both binaries run alternately ROUNDS times.
# Prints each benchmark's criterion median per run, the median of the
# runs, and for the groups both builds have, the ratio now / BASE.
#
#   bench/state_engine.sh                       # BASE = the commit before the state interface
#   ROUNDS=5 MEAS=5 bench/state_engine.sh
#   BASE=<commit> FILTER='stateless_refund' bench/state_engine.sh
#
# BASE is checked out (detached) in a worktree under target/ (SCRATCH) and
# built into this checkout's target directory, so the dependencies are
# shared. NOW_SRC measures another checkout as "now" (e.g. a scratch merge
# of unmerged branches), with this checkout's bench file. Output: $OUT
# (summary.txt, the criterion files of every run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# d74105d added the state interface (issue 11); BASE is the commit before.
BASE=${BASE:-d74105d~1}
SCRATCH=${SCRATCH:-$ROOT/target/state-baseline-src}
NOW_SRC=${NOW_SRC:-$ROOT}
ROUNDS=${ROUNDS:-3}   # runs of each binary, alternated
WARMUP=${WARMUP:-1}
MEAS=${MEAS:-4}
FILTER=${FILTER:-}               # criterion filter (regex) for both binaries
OUT=${OUT:-$ROOT/target/bench-state-engine/$(date +%Y%m%d-%H%M%S)}
PRIO=${PRIO:--10}
NICE=()
if [ -n "$PRIO" ] && nice -n "$PRIO" true 2>/dev/null; then NICE=(nice -n "$PRIO"); fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

# bench_exe DIR ARGS...: builds the `state` bench of rein-engine in DIR
# (ARGS after `--` go to rustc for that target only) and prints its path.
bench_exe() {
  local dir=$1
  shift
  (cd "$dir" && CARGO_TARGET_DIR=$TARGET_DIR cargo rustc -q -p rein-engine --bench state --profile bench \
    --message-format=json "$@") |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "state" and .executable != null) | .executable' | tail -1
}

# ---- the two builds ----------------------------------------------------------
base_sha=$(git rev-parse --verify "$BASE^{commit}")
if [ ! -e "$SCRATCH/.git" ]; then
  git worktree add --detach "$SCRATCH" "$base_sha" >/dev/null
fi
[ "$(git -C "$SCRATCH" rev-parse HEAD)" = "$base_sha" ] || git -C "$SCRATCH" checkout -q --detach "$base_sha"
# with_bench DIR: this bench file in the checkout DIR, registered in its manifest.
with_bench() {
  [ "$1" = "$ROOT" ] && return 0
  cp crates/rein-engine/benches/state.rs "$1/crates/rein-engine/benches/state.rs"
  if ! grep -q '^name = "state"' "$1/crates/rein-engine/Cargo.toml"; then
    printf '\n[[bench]]\nname = "state"\nharness = false\n' >>"$1/crates/rein-engine/Cargo.toml"
  fi
}
with_bench "$SCRATCH"
with_bench "$NOW_SRC"
NOW_BIN=$(bench_exe "$NOW_SRC")
BASE_BIN=$(bench_exe "$SCRATCH" -- --cfg rein_baseline)
[ -x "$NOW_BIN" ] && [ -x "$BASE_BIN" ] || { echo "build failed: now '$NOW_BIN', base '$BASE_BIN'"; exit 1; }
# Keep copies: a later build of either tree may replace the files.
cp "$NOW_BIN" "$OUT/state-now"
cp "$BASE_BIN" "$OUT/state-base"

say "# rein engine: stateful control in process, $(date -u +%FT%TZ)"
say "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)"
say "now: $(git -C "$NOW_SRC" rev-parse --short HEAD)$(git -C "$NOW_SRC" diff --quiet HEAD -- crates || echo ' (crates modified)')$([ "$NOW_SRC" = "$ROOT" ] || echo " (checkout $NOW_SRC)"); base: $(git rev-parse --short "$base_sha") ($BASE)"
say "parameters: ROUNDS=$ROUNDS WARMUP=$WARMUP MEAS=$MEAS FILTER='$FILTER' PRIO='$PRIO'"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
ps -eo pid,pcpu,etime,args --sort=-pcpu | cut -c1-140 | sed -n 1,6p | tee -a "$SUMMARY"
say ""

# ---- runs, alternated ------------------------------------------------------------
MEDIANS=$OUT/medians.tsv
printf 'round\tbuild\tbench\tmedian_ns\tload1\n' >"$MEDIANS"
for round in $(seq 1 "$ROUNDS"); do
  order="now base"
  [ $((round % 2)) = 0 ] && order="base now"
  for build in $order; do
    home=$OUT/criterion-$build-$round
    load1=$(cut -d' ' -f1 /proc/loadavg)
    # shellcheck disable=SC2086
    CRITERION_HOME=$home "${NICE[@]}" "$OUT/state-$build" --bench --warm-up-time "$WARMUP" --measurement-time "$MEAS" \
      --noplot $FILTER >"$OUT/run-$build-$round.txt" 2>&1
    for f in $(find "$home" -path '*/new/estimates.json' | sort); do
      id=$(jq -r .full_id "${f%estimates.json}benchmark.json")
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$build" "$id" "$(jq .median.point_estimate "$f")" "$load1" >>"$MEDIANS"
    done
    echo "round $round $build done (load $load1)"
  done
done

# ---- summary -------------------------------------------------------------------------
say "criterion median per run (ns), and the median of the runs:"
python3 - "$MEDIANS" <<'EOF' | tee -a "$SUMMARY"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
runs = {}
for rnd, build, bench, med, _ in rows:
    runs.setdefault((bench, build), []).append(float(med))
benches = sorted({b for b, _ in runs})
mid = {}
for bench in benches:
    for build in ("now", "base"):
        v = runs.get((bench, build))
        if v:
            mid[bench, build] = statistics.median(v)
            print(f"  {bench:<45} {build:<4} " + " / ".join(f"{x:.1f}" for x in v) + f"  -> {mid[bench, build]:.1f}")
print("now / base (medians of the runs):")
for bench in benches:
    if (bench, "now") in mid and (bench, "base") in mid:
        print(f"  {bench:<45} {mid[bench, 'now'] / mid[bench, 'base']:.3f}")
twin = {b.rsplit("/", 1)[1]: m for (b, build), m in mid.items() if build == "now" and b.startswith("state/stateless_twin/")}
print("stateful / stateless twin (now):")
for (bench, build), m in sorted(mid.items()):
    if build == "now" and bench.startswith("state/") and not bench.startswith("state/stateless_twin/"):
        kind = bench.rsplit("/", 1)[1]
        if kind in twin:
            print(f"  {bench:<45} {m:.1f} ns vs {twin[kind]:.1f} ns: {m / twin[kind]:.2f}x")
EOF
# ---- instructions per call (callgrind): independent of the machine's load ----
if [ "${ICOUNT:-1}" = 1 ] && command -v valgrind >/dev/null; then
  say "instructions per call under callgrind (stateless_refund_example, prepared and request; independent of load):"
  for build in now base; do
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$build.out" "$OUT/state-$build" --bench --profile-time 2 \
      'stateless_refund_example/(prepared|request)' >"$OUT/callgrind-$build.log" 2>&1
    python3 bench/callgrind_per_call.py "$OUT/callgrind-$build.out" '^rein_engine::policy::(Prepared|Policy)::decide$' |
      sed "s/^/  $build /" | tee -a "$SUMMARY"
  done
fi
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "raw files: $OUT"
