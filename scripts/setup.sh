#!/usr/bin/env bash
# Install everything repofs needs on Debian 12: system packages, then a venv with
# the Python dependencies (.venv). Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(python3 python3-venv python3-dev gcc pkg-config fuse3 libfuse3-dev
          rsync acl attr e2fsprogs util-linux openssh-server openssh-client
          go-md2man mandoc ceph-mon ceph-osd radosgw ceph-common)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.repofs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! .venv/bin/pip install -q -e '.[dev]' >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
  fi
  .venv/bin/python -c "import repofs, repofs_cli, pyfuse3, trio" # fail loudly if broken
  touch "$stamp"
fi
