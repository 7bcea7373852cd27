#!/usr/bin/env bash
# The one-command demo of ckanext-webhooks. On a fresh Debian machine, as root:
#
#   bash scripts/demo.sh          # set up a CKAN site, show a verified event,
#                                 # leave the site running
#   bash scripts/demo.sh --once   # the same, then stop everything it started;
#                                 # exit 0 only if the verified event arrived
#   bash scripts/demo.sh --stop   # stop a demo left running
#
# It installs what is missing (Debian packages, a virtualenv with CKAN 2.11.6
# and this extension), reuses or starts PostgreSQL and Redis, and starts a
# Solr STAND-IN (scripts/solr_standin.py: dataset writes work, search finds
# nothing; a real site has a real Solr), the web server, a worker and a
# receiver that verifies signatures with the `standardwebhooks` package.
#
# Settings (environment): WEBHOOKS_DEMO_DIR (default ./demo-site),
# WEBHOOKS_DEMO_DB (ckan_webhooks_demo, dropped and recreated on every run),
# WEBHOOKS_DEMO_REDIS_DB (11, flushed on every run), WEBHOOKS_DEMO_PORT (5000;
# a free port is used if it is taken).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=run
case ${1:-} in
  "") ;;
  --once) mode=once ;;
  --stop) mode=stop ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: bash scripts/demo.sh [--once | --stop]" >&2; exit 2 ;;
esac

dir=${WEBHOOKS_DEMO_DIR:-$root/demo-site}
db=${WEBHOOKS_DEMO_DB:-ckan_webhooks_demo}
redis_db=${WEBHOOKS_DEMO_REDIS_DB:-11}
pids=$dir/pids

say() { echo "demo: $*"; }

# Stop the processes a previous run in this directory started (each runs in a
# session of its own, so its whole process group goes).
stop_demo() {
  [ -f "$pids" ] || return 0
  while read -r pid; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done <"$pids"
  sleep 1
  while read -r pid; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done <"$pids"
  rm -f "$pids"
}

if [ "$mode" = stop ]; then
  stop_demo
  say "stopped"
  exit 0
fi

# start NAME COMMAND...: run COMMAND in the background, logging to NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
  echo $! >>"$pids"
}

keep_running=0
on_exit() {
  local status=$?
  if [ "$keep_running" = 0 ]; then
    if [ "$status" != 0 ]; then
      say "FAILED; the last lines of the logs in $dir:"
      for log in "$dir"/*.log; do
        [ -f "$log" ] && { echo "--- $log"; tail -n 15 "$log"; }
      done
    fi
    stop_demo
  fi
}
trap on_exit EXIT

# --- what a fresh Debian lacks -------------------------------------------
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(
  os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" 2>/dev/null ||
  need+=(python3-dev)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "demo: install ${need[*]} first (or run as root)" >&2; exit 1; }
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$dir"
stop_demo
: >"$pids"
rm -f "$dir"/*.log "$dir/first-event.json"

say "PostgreSQL and Redis"
WEBHOOKS_BROWSER=0 bash scripts/services.sh >/dev/null
# The demo's own database and Redis db, fresh on every run.
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
WEBHOOKS_BROWSER=0 bash scripts/services.sh "$db" >/dev/null
redis-cli -h 127.0.0.1 -n "$redis_db" flushdb >/dev/null

say "virtualenv with CKAN 2.11.6 (the first run installs it: a few minutes)"
venv=$(bash scripts/venv.sh 2.11.6 2>"$dir/venv.log")
py=$venv/bin/python
ckan=$venv/bin/ckan
# Only the demo's ini counts: no CKAN_SQLALCHEMY_URL etc. from the caller.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^CKAN_' || true)

# free_port PREFERRED: PREFERRED if nothing listens there, else any free port.
free_port() {
  "$py" - "$1" <<'EOF'
import socket, sys
for port in (int(sys.argv[1]), 0):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(sock.getsockname()[1])
        break
EOF
}
port=$(free_port "${WEBHOOKS_DEMO_PORT:-5000}")
solr_port=$(free_port 8983)
receiver_port=$(free_port 8765)
site=http://127.0.0.1:$port

say "Solr stand-in on port $solr_port (NOT a search engine: search stays empty)"
start solr-standin "$py" scripts/solr_standin.py --port "$solr_port"

say "CKAN site in $dir"
ini=$dir/ckan.ini
"$ckan" generate config "$ini" >"$dir/setup.log" 2>&1
"$ckan" config-tool "$ini" \
  "sqlalchemy.url=postgresql://postgres@127.0.0.1:5432/$db" \
  "ckan.redis.url=redis://127.0.0.1:6379/$redis_db" \
  "solr_url=http://127.0.0.1:$solr_port/solr/ckan" \
  "ckan.site_url=$site" \
  "ckan.site_id=webhooks_demo" \
  "ckan.site_title=ckanext-webhooks demo" \
  "ckan.storage_path=$dir/storage" \
  "ckan.plugins=webhooks" \
  "ckan.auth.create_unowned_dataset=true" \
  "ckanext.webhooks.allowed_hosts=127.0.0.1" \
  "ckanext.webhooks.retry_schedule=5 30 120" >>"$dir/setup.log" 2>&1
# The demo receiver runs on this machine: allowed_hosts exempts 127.0.0.1 from
# the rule that keeps webhooks off private addresses.
"$ckan" -c "$ini" db init >>"$dir/setup.log" 2>&1
"$ckan" -c "$ini" db upgrade -p webhooks >>"$dir/setup.log" 2>&1

password=$("$py" -c "import secrets; print(secrets.token_urlsafe(12))")
"$ckan" -c "$ini" user add demo email=demo@example.org "password=$password" \
  >>"$dir/setup.log" 2>&1
"$ckan" -c "$ini" sysadmin add demo >>"$dir/setup.log" 2>&1
token=$("$ckan" -c "$ini" user token add demo demo-receiver -q 2>>"$dir/setup.log" | tail -n 1)

say "web server on $site, a worker, and the retry dispatcher"
start ckan-run "$ckan" -c "$ini" run -H 127.0.0.1 -p "$port" --disable-reloader --threaded
start worker "$ckan" -c "$ini" jobs worker
start dispatch "$ckan" -c "$ini" webhooks dispatch --loop --interval 10
"$py" - "$site" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen(sys.argv[1] + "/api/3/action/status_show") as r:
            if r.status == 200:
                break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("demo: the web server did not answer in 2 minutes")
        time.sleep(0.5)
EOF

say "receiver on port $receiver_port: subscribes to every event, creates a dataset"
CKAN_API_TOKEN=$token start receiver "$py" scripts/demo_receiver.py \
  --ckan "$site" --port "$receiver_port" --create-dataset demo-dataset \
  --first-event "$dir/first-event.json"

for _ in $(seq 120); do
  [ -f "$dir/first-event.json" ] && break
  sleep 0.5
done
if [ ! -f "$dir/first-event.json" ]; then
  say "no verified event arrived within a minute"
  exit 1
fi
echo
say "the receiver got this event and verified its signature:"
sed -n '/^receiver: verified/,$p' "$dir/receiver.log" | head -n 60
echo

ckanapi=$venv/bin/ckanapi
say "your API token (the demo user's): $token"
cat <<EOF
demo: subscribe your own app with ckanapi (the receiver verifies deliveries
demo: for any webhook of this site, and says which it verified):
  $ckanapi action webhook_create -r $site -a $token \\
      topic=dataset/update address=http://127.0.0.1:$receiver_port/my-app
  $ckanapi action webhook_list -r $site -a $token
or in Python:
  from ckanapi import RemoteCKAN
  ckan = RemoteCKAN("$site", apikey="$token")
  hook_id = ckan.action.webhook_create(
      topic="dataset/update", address="http://127.0.0.1:$receiver_port/my-app")
  print(ckan.action.webhook_delivery_list(id=hook_id, by_event=True))
EOF
echo

if [ "$mode" = once ]; then
  say "OK: verified event received; stopping everything (--once)"
  exit 0
fi

keep_running=1
stop_command="bash scripts/demo.sh --stop"
[ "$dir" = "$root/demo-site" ] || stop_command="WEBHOOKS_DEMO_DIR=$dir $stop_command"
cat <<EOF
demo: the site is running.
  CKAN           $site   (log in as demo / $password)
  API token      $token
  your webhooks  $site/webhooks
  the dataset    $site/dataset/demo-dataset
  events         tail -f $dir/receiver.log   (change the dataset to see more)
  logs           $dir/*.log
  stop it with   $stop_command
EOF
