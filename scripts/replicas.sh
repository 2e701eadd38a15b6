#!/usr/bin/env bash
# Several `rein serve` replicas on one PostgreSQL database behind HAProxy, on
# one machine and without containers: what docker-compose.yml runs, for CI,
# benchmarks (bench/replicas.sh) and trying it out.
#
#   scripts/replicas.sh start [POLICY...]   start everything; print the URL
#   scripts/replicas.sh stop                stop everything this script started
#   scripts/replicas.sh status              what runs, and each replica's /healthz
#
# `start` makes, in $DIR (default target/replicas):
#   - a PostgreSQL cluster of its own (initdb in $DIR/pg, trust auth on
#     127.0.0.1 and a socket in that folder only, a free port; as root it
#     runs as the `postgres` user, which PostgreSQL requires, in a folder
#     under /tmp that user can reach, removed by `stop`), or uses the
#     database of $PG_URL when set (it must exist; nothing is created in it
#     but Rein's schema);
#   - one audit key, one delegation key and one tokens file (a fresh token
#     per role: agent, approver, admin) shared by every replica: the
#     replicas append to one chain, so they must hash with one key;
#   - $REPLICAS (default 3) `rein serve --db postgres://…` on free loopback
#     ports, each waited for on /healthz;
#   - HAProxy on a free port (or $LB_PORT), round robin over the replicas,
#     health-checked on /healthz (a replica answering 503, e.g. one that
#     could not load the published policy, leaves the rotation).
# It prints `REIN_URL=…` (and writes $DIR/env: REIN_URL, REIN_PG_URL, the
# replicas' URLs and pids, the tokens) and returns; `stop` ends it all.
#
# Knobs: REIN (the binary; default: built with `cargo build --release`),
# REPLICAS, DIR, PG_URL, PG_BIN (default /usr/lib/postgresql/15/bin),
# LB_PORT, SERVE_ARGS (more `rein serve` arguments, e.g. `--workers 2`),
# HAPROXY (default `haproxy`; Debian's package: apt-get install haproxy).
# With REPLICAS=1 the single replica is still behind HAProxy, so that one
# and three replicas are measured through the same path.
#
# Every wait is bounded; a failed start stops what it started and prints
# the logs' tails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DIR=${DIR:-$ROOT/target/replicas}
REPLICAS=${REPLICAS:-3}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
HAPROXY=${HAPROXY:-haproxy}
SERVE_ARGS=${SERVE_ARGS:-}
START_SECONDS=${START_SECONDS:-60}

say() { printf 'replicas: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Runs a PostgreSQL program as the cluster's owner (PostgreSQL refuses root),
# from / (a checkout under /root is closed to the postgres user).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# The cluster's folder: $DIR/pg, or as root a folder under /tmp (the
# postgres user may not reach $DIR), named in $DIR/pg.path.
pg_dir() {
  if [ -s "$DIR/pg.path" ]; then cat "$DIR/pg.path"; else echo "$DIR/pg"; fi
}

# A TCP port nothing listens on now (bind-then-close by the kernel's choice).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to $2 seconds for `curl` to get 200 from $1; gives up at once
# when the process $3 (if given) has exited.
wait_healthy() {
  local url=$1 secs=$2 pid=${3:-} i
  for i in $(seq 1 $((secs * 10))); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)" = 200 ]; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.1
  done
  return 1
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Stops the process in pid file $1: TERM, up to 10 s, then KILL.
stop_pidfile() {
  local file=$1 pid i
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

cmd_stop() {
  [ -d "$DIR" ] || { say "nothing to stop ($DIR does not exist)"; return 0; }
  stop_pidfile "$DIR/haproxy.pid"
  for f in "$DIR"/replica-*.pid; do
    [ -e "$f" ] && stop_pidfile "$f"
  done
  local pg
  pg=$(pg_dir)
  if [ -d "$pg/data" ]; then
    as_owner "$PG_BIN/pg_ctl" stop -D "$pg/data" -m fast -t 30 >/dev/null 2>&1 || true
    [ -s "$DIR/pg.path" ] && cp "$pg/server.log" "$DIR/pg-server.log" 2>/dev/null || true
    [ -s "$DIR/pg.path" ] && rm -rf "$pg" "$DIR/pg.path"
  fi
  say "stopped (logs kept in $DIR)"
}

cmd_status() {
  [ -s "$DIR/env" ] || die "not started ($DIR/env is missing)"
  # shellcheck disable=SC1091
  . "$DIR/env"
  echo "load balancer: $REIN_URL ($(pid_alive "$(cat "$DIR/haproxy.pid" 2>/dev/null)" && echo running || echo stopped))"
  echo "database: $REIN_PG_URL"
  local i url
  for i in $(seq 1 "$REIN_REPLICAS"); do
    url=$(eval echo "\$REIN_URL_$i")
    echo "replica $i: $url $(curl -s --max-time 2 "$url/healthz" || echo unreachable)"
  done
}

start_cluster() {
  local port pg
  [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL at $PG_BIN (apt-get install postgresql-15, or set PG_BIN or PG_URL)"
  rm -rf "$DIR/pg"
  if [ "$(id -u)" = 0 ]; then
    pg=$(mktemp -d /tmp/rein-replicas-pg.XXXXXX)
    echo "$pg" >"$DIR/pg.path"
    chown postgres "$pg"
    chmod 700 "$pg"
  else
    pg=$DIR/pg
    rm -f "$DIR/pg.path"
    mkdir -p "$pg"
  fi
  as_owner "$PG_BIN/initdb" -D "$pg/data" -U rein --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  port=$(free_port)
  # Loopback only; the socket in the cluster's own folder, not /var/run.
  # max_connections: each replica's pool, its lease and LISTEN connections.
  as_owner "$PG_BIN/pg_ctl" start -D "$pg/data" -l "$pg/server.log" -w -t 60 \
    -o "-p $port -k $pg -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null \
    || { tail -20 "$pg/server.log" >&2; die "PostgreSQL did not start"; }
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U rein rein
  PG_URL="postgres://rein@127.0.0.1:$port/rein"
}

write_haproxy_config() {
  local lb_port=$1 cfg=$DIR/haproxy.cfg i
  # The settings of deploy/haproxy.cfg (see there why), with local ports.
  {
    cat <<EOF
global
    maxconn 4096
    pidfile $DIR/haproxy.pid

defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    retries 0

frontend rein
    bind 127.0.0.1:$lb_port
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 maxconn 1024
EOF
    for i in $(seq 1 "$REPLICAS"); do
      echo "    server rein$i 127.0.0.1:$(cat "$DIR/replica-$i.port") check"
    done
  } >"$cfg"
  "$HAPROXY" -c -q -f "$cfg" || die "the HAProxy configuration $cfg does not validate"
}

fail_start() {
  say "$*"
  local f
  for f in "$DIR"/replica-*.log "$DIR/haproxy.log" "$(pg_dir)/server.log"; do
    [ -s "$f" ] && { say "--- tail of $f"; tail -15 "$f" >&2; }
  done
  cmd_stop
  exit 1
}

cmd_start() {
  local policies=("$@") i port lb_port pid
  [ ${#policies[@]} -gt 0 ] || policies=("$ROOT/examples/refund/policy.yaml")
  command -v "$HAPROXY" >/dev/null || die "no $HAPROXY (apt-get install haproxy, or set HAPROXY)"
  command -v curl >/dev/null || die "no curl"
  if [ -d "$DIR" ] && ls "$DIR"/*.pid >/dev/null 2>&1; then
    die "$DIR holds a running set (scripts/replicas.sh stop first, or set DIR)"
  fi
  if [ -z "${REIN:-}" ]; then
    cargo build -q --release --locked -p rein-cli
    REIN=$ROOT/target/release/rein
  fi
  mkdir -p "$DIR"
  rm -f "$DIR"/replica-*
  # Absolute paths: the replicas run from $DIR.
  for i in "${!policies[@]}"; do policies[i]=$(realpath "${policies[i]}"); done

  [ -n "${PG_URL:-}" ] || start_cluster

  # Shared secrets, owner-only.
  (
    umask 077
    head -c 32 /dev/urandom >"$DIR/audit.key"
    head -c 32 /dev/urandom >"$DIR/delegation.key"
    token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    cat >"$DIR/tokens.yaml" <<EOF
tokens:
  - {name: agent, role: agent, token: "$(token)"}
  - {name: approver, role: approver, token: "$(token)"}
  - {name: admin, role: admin, token: "$(token)"}
EOF
  )

  for i in $(seq 1 "$REPLICAS"); do
    port=$(free_port)
    echo "$port" >"$DIR/replica-$i.port"
    # shellcheck disable=SC2086
    (cd "$DIR" && exec setsid "$REIN" serve "${policies[@]}" --db "$PG_URL" --tokens "$DIR/tokens.yaml" \
      --audit-key "$DIR/audit.key" --delegation-key "$DIR/delegation.key" \
      --listen "127.0.0.1:$port" $SERVE_ARGS </dev/null >"$DIR/replica-$i.log" 2>&1) &
    echo $! >"$DIR/replica-$i.pid"
  done
  for i in $(seq 1 "$REPLICAS"); do
    wait_healthy "http://127.0.0.1:$(cat "$DIR/replica-$i.port")/healthz" "$START_SECONDS" "$(cat "$DIR/replica-$i.pid")" \
      || fail_start "replica $i did not answer /healthz with 200 within ${START_SECONDS}s (or exited)"
  done

  lb_port=${LB_PORT:-$(free_port)}
  write_haproxy_config "$lb_port"
  "$HAPROXY" -D -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 || fail_start "HAProxy did not start"
  wait_healthy "http://127.0.0.1:$lb_port/healthz" 10 || fail_start "HAProxy does not reach a replica"

  {
    echo "REIN_URL=http://127.0.0.1:$lb_port"
    echo "REIN_PG_URL=$PG_URL"
    echo "REIN_REPLICAS=$REPLICAS"
    for i in $(seq 1 "$REPLICAS"); do
      echo "REIN_URL_$i=http://127.0.0.1:$(cat "$DIR/replica-$i.port")"
      echo "REIN_PID_$i=$(cat "$DIR/replica-$i.pid")"
    done
    echo "REIN_HAPROXY_PID=$(cat "$DIR/haproxy.pid")"
    for role in agent approver admin; do
      echo "REIN_TOKEN_$(echo "$role" | tr a-z A-Z)=$(sed -n "s/.*role: $role, token: \"\(.*\)\"}/\1/p" "$DIR/tokens.yaml")"
    done
  } >"$DIR/env"
  chmod 600 "$DIR/env"
  say "$REPLICAS replicas on $PG_URL behind HAProxy; tokens and URLs in $DIR/env; stop: scripts/replicas.sh stop"
  echo "REIN_URL=http://127.0.0.1:$lb_port"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: scripts/replicas.sh start [POLICY...] | stop | status" ;;
esac
