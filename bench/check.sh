#!/usr/bin/env bash
# Whole-process cost of `rein check` on generated policies of 1,000 and
# 10,000 rules (the `gen_policy` bin of rein-bench): with a warm
# compiled-policy cache, beside `cat` of the request as the floor in the
# same hyperfine run; then with `--no-cache` (read, type-check, compile and
# decide on every run), which bounds load + check + compile from above.
#
#   bash bench/check.sh          # needs hyperfine (Debian package)
#
# A warm check reads the policy files (hashed for the cache key), the
# entry's header and shared part, and the section of the request's action
# only: its cost grows with the size of the policy text, not of the IR.
#
# Knobs: SIZES (default "1000 10000"), RUNS (warm-cache runs per command,
# default 300), COLD_RUNS (--no-cache runs, default 20), PROFILE (cargo
# profile, default release), BUILD=0 (time the binaries already built),
# CALLGRIND=1 (also count each warm command's instructions, whole process,
# with valgrind: repeatable on a loaded machine, unlike the times).
# Takes about a minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-1000 10000}"
RUNS="${RUNS:-300}"
COLD_RUNS="${COLD_RUNS:-20}"
PROFILE="${PROFILE:-release}"
OUT=target/bench-check
mkdir -p "$OUT"
[ "${BUILD:-1}" = 0 ] || cargo build -q --profile "$PROFILE" -p rein-cli -p rein-bench --bin rein --bin gen_policy
TARGET="${CARGO_TARGET_DIR:-target}/$PROFILE"
REIN="$TARGET/rein"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

for n in $SIZES; do
  dir="$OUT/$n"
  [ -s "$dir/policy.yaml" ] || "$TARGET/gen_policy" "$n" "$dir" >/dev/null
  cache="$dir/cache"
  rm -rf "$cache"
  check=("$REIN" check -p "$dir/policy.yaml" -r "$dir/request.json")
  # The answer must be a real decision (the generated request is allowed)
  # and the same with and without the cache before anything is timed.
  cold=$("${check[@]}" --no-cache)
  echo "$cold" | grep -q '"effect": "allow"'
  [ "$("${check[@]}" --cache-dir "$cache")" = "$cold" ]
  [ "$("${check[@]}" --cache-dir "$cache" 2>&1)" = "$cold" ] # a hit: nothing on stderr
  echo "== $n rules: warm cache ($RUNS runs)"
  hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/warm-$n.json" \
    "cat $dir/request.json" \
    "${check[*]} --cache-dir $cache" 2>&1 | grep -v '^ *$'
  if [ "${CALLGRIND:-0}" = 1 ]; then
    echo "== $n rules: instructions (valgrind --tool=callgrind, whole process)"
    for cmd in "cat $dir/request.json" "$REIN --version" "${check[*]} --cache-dir $cache"; do
      # shellcheck disable=SC2086
      count=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null $cmd 2>&1 >/dev/null |
        sed -n 's/.*Collected : //p')
      printf '%14s  %s\n' "$count" "$cmd"
    done
  fi
  echo "== $n rules: --no-cache ($COLD_RUNS runs)"
  hyperfine -N --warmup 2 --runs "$COLD_RUNS" --export-json "$OUT/cold-$n.json" \
    "${check[*]} --no-cache" 2>&1 | grep -v '^ *$'
done

python3 - "$OUT" $SIZES <<'PY'
import json, sys
out, sizes = sys.argv[1], sys.argv[2:]
print(f"{'rules':>6} {'cat floor':>10} {'warm cache':>11} {'--no-cache':>11}  (medians, ms)")
for n in sizes:
    warm = json.load(open(f"{out}/warm-{n}.json"))["results"]
    cold = json.load(open(f"{out}/cold-{n}.json"))["results"]
    floor = next(r for r in warm if r["command"].startswith("cat "))
    cached = next(r for r in warm if "--cache-dir" in r["command"])
    print(f"{n:>6} {floor['median'] * 1e3:10.2f} {cached['median'] * 1e3:11.2f} {cold[0]['median'] * 1e3:11.2f}")
PY
