#!/usr/bin/env bash
# Installs every test dependency on a fresh Debian machine and runs the tests.
#   Debian packages: prometheus (promtool), prometheus-alertmanager (amtool),
#   prometheus-node-exporter, jsonnet (the mixin), systemd (systemd-analyze), curl, git;
#   Python packages: the project with its [test] extra, in .venv. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
need_debs=()
"$PY" -c "import ensurepip, venv" 2>/dev/null || need_debs+=(python3-venv)
command -v promtool >/dev/null || need_debs+=(prometheus)
command -v prometheus >/dev/null || need_debs+=(prometheus)
command -v amtool >/dev/null || need_debs+=(prometheus-alertmanager)
command -v prometheus-alertmanager >/dev/null || need_debs+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null || need_debs+=(prometheus-node-exporter)
command -v jsonnet >/dev/null || need_debs+=(jsonnet)                # the mixin's tests
command -v systemd-analyze >/dev/null || need_debs+=(systemd)     # verifies the shipped unit
command -v curl >/dev/null || need_debs+=(curl)                   # the README's commands use it
command -v git >/dev/null || need_debs+=(git)                     # the fresh-copy test lists tracked files
if [ ${#need_debs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "test.sh: installing Debian packages: ${need_debs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${need_debs[@]}" | sort -u) >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "test.sh: creating .venv"
    "$PY" -m venv .venv
fi
echo "test.sh: installing the project and its test extras into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

echo "test.sh: running the tests"
exec .venv/bin/python -m pytest "$@"
