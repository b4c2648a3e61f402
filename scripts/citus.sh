#!/usr/bin/env bash
# A local Citus cluster for keytrail (SPEC §12): a coordinator and two workers on this machine.
#
#   scripts/citus.sh start   (make citus)       prints DATABASE_URL=… for the coordinator
#   scripts/citus.sh stop    (make citus-stop)  stops the nodes and deletes their data
#   scripts/citus.sh url                        prints the URL of a running cluster
#   scripts/citus.sh workers                    prints how many workers the coordinator sees
#
# Uses an installed Citus; else builds Citus 12.1.12 from ../shared/vendor/citus-12.1.12.tar.gz
# (or $KEYTRAIL_CITUS_TARBALL) against Debian's PostgreSQL 15, installing the Debian packages it
# needs when run as root. Without either it says how to get Citus and exits non-zero.
#
# Settings (environment): KEYTRAIL_CITUS_PORT (coordinator, default 9700; workers the next two),
# KEYTRAIL_CITUS_DIR (data, default /tmp/keytrail-citus-$PORT), KEYTRAIL_CITUS_PG_BIN (default
# /usr/lib/postgresql/15/bin).
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${KEYTRAIL_CITUS_PORT:-9700}
dir=${KEYTRAIL_CITUS_DIR:-/tmp/keytrail-citus-$port}
bin=${KEYTRAIL_CITUS_PG_BIN:-/usr/lib/postgresql/15/bin}
tarball=${KEYTRAIL_CITUS_TARBALL:-$root/../shared/vendor/citus-12.1.12.tar.gz}
db=keytrail
nodes=("$port" "$((port + 1))" "$((port + 2))")
# The nodes take TCP connections with a password only (scram); psql here uses their sockets,
# in a folder only the nodes' owner can enter.
password_file=$dir/password
# Debian's packages for PostgreSQL 15 and for building Citus (its README's list).
packages=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev
  libkrb5-dev build-essential)

say() { echo "citus: $*" >&2; }

# PostgreSQL refuses to run as root: as root, the nodes run as the `postgres` OS user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

need_postgres() {
  if [ -x "$bin/pg_ctl" ] && [ -x "$bin/pg_config" ]; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    say "PostgreSQL 15 is not installed ($bin/pg_ctl). As root: apt-get install -y ${packages[*]}"
    exit 1
  fi
  install_packages
}

install_packages() {
  say "installing Debian packages: ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
}

pg_config_bin() { echo "$bin/pg_config"; }

has_citus() {
  local lib
  lib=$("$(pg_config_bin)" --pkglibdir 2>/dev/null) || return 1
  [ -f "$lib/citus.so" ]
}

build_citus() {
  if [ ! -f "$tarball" ]; then
    say "Citus is not installed for $("$(pg_config_bin)" --version 2>/dev/null || echo PostgreSQL 15),"
    say "and there is no source tarball at $tarball."
    say "Install Citus 12.1 (https://docs.citusdata.com/en/stable/installation/sql_single_machine.html),"
    say "or set KEYTRAIL_CITUS_TARBALL to a citus-12.1.x source tarball."
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    say "Citus is not installed; building it from $tarball installs into PostgreSQL's folders: run as root."
    exit 1
  fi
  # The headers come with postgresql-server-dev-15 (installing it upgrades postgresql-15 in
  # place: no node of this cluster is running yet).
  if [ ! -f "$("$(pg_config_bin)" --includedir-server 2>/dev/null)/postgres.h" ] || ! command -v cc >/dev/null; then
    install_packages
  fi
  local work
  work=$(mktemp -d)
  say "building Citus from $(basename "$tarball") (about a minute)"
  tar -xzf "$tarball" -C "$work"
  # The build's output goes to a log, shown when it fails.
  if ! (cd "$work"/citus-* && ./configure PG_CONFIG="$(pg_config_bin)" && make -j"$(nproc)" &&
    make install) >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    say "the build failed (log above; all of it in $work/build.log)"
    exit 1
  fi
  rm -rf "$work"
  has_citus || { say "the build did not install citus.so"; exit 1; }
}

running() {
  local p
  # Written last by start: a cluster whose start did not finish is not "running".
  [ -f "$dir/ready" ] || return 1
  for p in "${nodes[@]}"; do
    as_owner "$bin/pg_ctl" status -D "$dir/$p" >/dev/null 2>&1 || return 1
  done
}

psql_node() {
  local p=$1
  shift
  as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sockets" -p "$p" -U postgres "$@"
}

init_node() {
  local p=$1 data=$dir/$1
  as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$password_file" --no-sync >/dev/null
  cat >>"$data/postgresql.conf" <<EOF
port = $p
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sockets'
shared_preload_libraries = 'citus'
max_prepared_transactions = 100
max_connections = 300
shared_buffers = 256MB
max_wal_size = 4GB
logging_collector = off
EOF
}

start() {
  need_postgres
  has_citus || build_citus
  if running; then
    echo "DATABASE_URL=$(url)"
    return 0
  fi
  # A cluster left half-started (or from another version of this script) is started afresh.
  stop_nodes quiet
  rm -rf "$dir"
  # Created here, private, and never reused: mkdir fails if anyone made it meanwhile.
  mkdir -m 700 "$dir"
  mkdir -m 700 "$dir/sockets"
  (umask 077 && od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$password_file")
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  # A start that fails half-way stops what it started.
  trap 'stop_nodes quiet' ERR
  local p
  for p in "${nodes[@]}"; do init_node "$p"; done
  for p in "${nodes[@]}"; do
    as_owner "$bin/pg_ctl" start -w -D "$dir/$p" -l "$dir/$p.log" >/dev/null
  done
  local password
  password=$(cat "$password_file")
  for p in "${nodes[@]}"; do
    psql_node "$p" -d postgres -c "create database $db"
    psql_node "$p" -d "$db" -c 'create extension citus'
    # How the nodes authenticate to each other (node 0: every node); on stdin, not in argv.
    psql_node "$p" -d "$db" <<SQL
insert into pg_dist_authinfo (nodeid, rolename, authinfo) values (0, 'postgres', 'password=$password');
SQL
  done
  psql_node "$port" -d "$db" -c "select citus_set_coordinator_host('127.0.0.1', $port)" >/dev/null
  for p in "${nodes[@]:1}"; do
    psql_node "$port" -d "$db" -c "select citus_add_node('127.0.0.1', $p)" >/dev/null
  done
  as_owner touch "$dir/ready"
  trap - ERR
  say "coordinator on 127.0.0.1:$port, workers on ${nodes[1]} and ${nodes[2]} (data in $dir)"
  echo "DATABASE_URL=$(url)"
}

url() {
  local password
  password=$(as_owner cat "$password_file")
  echo "postgres://postgres:$password@127.0.0.1:$port/$db"
}

stop_nodes() {
  local p
  for p in "${nodes[@]}"; do
    if [ -d "$dir/$p" ]; then
      as_owner "$bin/pg_ctl" stop -m fast -D "$dir/$p" >/dev/null 2>&1 || true
    fi
  done
  [ "${1:-}" = quiet ] || say "stopped"
}

case "${1:-start}" in
  start) start ;;
  stop)
    if [ -d "$dir" ]; then
      stop_nodes
      # Only once every node is down: data under a running node stays where pg_ctl finds it.
      for p in "${nodes[@]}"; do
        if [ -d "$dir/$p" ] && as_owner "$bin/pg_ctl" status -D "$dir/$p" >/dev/null 2>&1; then
          say "node $p is still running; its data is kept in $dir"
          exit 1
        fi
      done
      rm -rf "$dir"
    fi
    ;;
  workers)
    running || { say "no cluster running on $port (make citus)"; exit 1; }
    psql_node "$port" -d "$db" -Atc 'select count(*) from citus_get_active_worker_nodes()'
    ;;
  url)
    running || { say "no cluster running on $port (make citus)"; exit 1; }
    url
    ;;
  *)
    echo "usage: $0 start|stop|url|workers" >&2
    exit 2
    ;;
esac
