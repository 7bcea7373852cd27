#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1. Reuses running servers;
# installs (Debian packages, as root) and starts them only where missing.
set -euo pipefail

have_pg() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
have_redis() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "services: $* missing and not root; install them first" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Headers for building psycopg2, and the clients used below.
dpkg -s libpq-dev >/dev/null 2>&1 || apt_install libpq-dev
command -v pg_isready >/dev/null || apt_install postgresql-client

if ! have_pg; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "ckanext-webhooks" "$hba"; then
    # Trust local TCP connections, as on the project's machines.
    sed -i '1i # ckanext-webhooks: trust local connections\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  for _ in $(seq 30); do have_pg && break; sleep 1; done
fi
have_pg || { echo "services: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }

if ! have_redis; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
    --appendonly no --dir /tmp --logfile /tmp/redis-ckanext-webhooks.log
  for _ in $(seq 30); do have_redis && break; sleep 1; done
fi
have_redis || { echo "services: Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }

# The browser test drives Debian's Chromium (WEBHOOKS_BROWSER=0 skips this).
if [ "${WEBHOOKS_BROWSER:-1}" = 1 ] && ! command -v chromium >/dev/null; then
  apt_install chromium
fi

# ensure_db NAME: create the database if it does not exist.
ensure_db() {
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$1'" |
    grep -q 1 || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$1\""
}
for db in "$@"; do ensure_db "$db"; done
echo "services: PostgreSQL and Redis are up"
