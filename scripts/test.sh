#!/usr/bin/env bash
# The one command that runs the tests on a fresh Debian machine:
#   bash scripts/test.sh            # CKAN 2.11.6 and 2.12.0
#   bash scripts/test.sh 2.11.6     # one version; extra args go to pytest
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

versions=()
while [ $# -gt 0 ] && [[ $1 =~ ^2\.[0-9]+\.[0-9]+$ ]]; do versions+=("$1"); shift; done
[ ${#versions[@]} -gt 0 ] || versions=(2.11.6 2.12.0)

status=0
for version in "${versions[@]}"; do
  tag=${version//./_}
  db=ckan_webhooks_test_$tag
  bash scripts/services.sh "$db" >&2
  venv=$(bash scripts/venv.sh "$version")
  export CKAN_SQLALCHEMY_URL=${WEBHOOKS_TEST_DB_URL:-postgresql://postgres@127.0.0.1:5432/$db}
  export CKAN_REDIS_URL=${WEBHOOKS_TEST_REDIS_URL:-redis://127.0.0.1:6379/7}
  export PATH=$venv/bin:$PATH
  ckan -c test.ini db init >/dev/null 2>&1
  ckan -c test.ini db upgrade -p webhooks >/dev/null 2>&1
  echo "== CKAN $version: pytest" >&2
  python -m pytest "$@" || status=$?
done
exit $status
