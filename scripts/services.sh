#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ on loopback where they are installed but down (the
# distributed tests use them; the embedded studio needs none). Already running: nothing to do.
# Prints one line per service; never fails the caller (a missing service skips or fails the
# tests that need it, with the reason).
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; return 1; }

start() {  # name port command...
  local name=$1 port=$2; shift 2
  if up "$port"; then echo "$name: running on 127.0.0.1:$port"; return; fi
  if ! command -v "$1" >/dev/null; then echo "$name: not installed ($1 missing)"; return; fi
  "$@" >/dev/null 2>&1
  if wait_up "$port"; then echo "$name: started on 127.0.0.1:$port"; else echo "$name: did not start"; fi
}

if [[ -d /etc/postgresql ]]; then
  start PostgreSQL 5432 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
else
  echo "PostgreSQL: not installed"
fi
start Redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
  --dir /var/lib/redis --logfile /var/log/redis/ci.log
start RabbitMQ 5672 rabbitmq-server -detached
exit 0
