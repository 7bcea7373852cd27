#!/usr/bin/env bash
# scripts/venv.sh VERSION: print the path of a virtualenv with CKAN VERSION,
# the test tools and this extension, creating or completing it if needed.
set -euo pipefail
version=${1:-2.11.6}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${WEBHOOKS_VENV_DIR:-$root/.venvs}/ckan-$version
stamp=$venv/.ckanext-webhooks-installed
want=$(cat "$root/pyproject.toml" "$root/setup.py" "$root/dev-requirements.txt" "$0" \
  | sha1sum | cut -c1-12)

current() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }

if ! current; then
  # Test runs started side by side wait for one install instead of racing.
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
fi
if ! current; then
  echo "venv: installing CKAN $version into $venv (a minute or two, once)" >&2
  python3 -m venv "$venv"
  pip=("$venv/bin/pip" install -q --disable-pip-version-check)
  "${pip[@]}" -U pip wheel setuptools 2>&1 | grep -v '^WARNING: Location' >&2 || true
  case $version in
    2.11.*) extra=("pytest==8.3.4") ;;   # pytest 9 breaks CKAN 2.11's plugin
    *) extra=("pytest") ;;
  esac
  "${pip[@]}" "ckan[requirements]==$version" "${extra[@]}" \
    -r "$root/dev-requirements.txt" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "${pip[@]}" -e "$root" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$venv/bin/python" -c "import ckan, ckanext.webhooks, standardwebhooks, pytest" >&2
  echo "$want" >"$stamp"
fi
echo "$venv"
