#!/bin/sh
# Run the repofs benchmarks against borg and restic (by hand; never in CI).
#   bench/run.sh                  core (create/restore) and mount benchmarks
#   bench/run.sh core [ARGS...]   only bench_core.py, with its arguments
#   bench/run.sh mount [ARGS...]  only bench_mount.py, with its arguments
#   bench/run.sh inspect [ARGS...] only bench_inspect.py (diff and find), with its arguments
# Installs borgbackup, restic, time and fuse3 from Debian if missing (needs root).
# Corpus, repositories and caches go to /dev/shm/repofs-bench (about 6 GiB of RAM
# at the peak); results and logs to bench/results/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py="$here/../.venv/bin/python"
[ -x "$py" ] || py=python3

missing=""
command -v borg >/dev/null 2>&1 || missing="$missing borgbackup"
command -v restic >/dev/null 2>&1 || missing="$missing restic"
[ -x /usr/bin/time ] || missing="$missing time"
command -v fusermount3 >/dev/null 2>&1 || missing="$missing fuse3"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi
# borg mount needs a FUSE binding for the system python
if ! /usr/bin/python3 -c 'import llfuse' 2>/dev/null \
        && ! /usr/bin/python3 -c 'import pyfuse3' 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-llfuse || true
fi

what=${1:-all}
[ $# -gt 0 ] && shift
case "$what" in
    core)  exec "$py" "$here/bench_core.py" "$@" ;;
    mount) exec "$py" "$here/bench_mount.py" "$@" ;;
    inspect) exec "$py" "$here/bench_inspect.py" "$@" ;;
    all)
        rc=0
        "$py" "$here/bench_core.py" "$@" || rc=$?
        "$py" "$here/bench_mount.py" || rc=$?
        exit $rc
        ;;
    *) echo "usage: $0 [core|mount|inspect|all] [ARGS...]" >&2; exit 2 ;;
esac
