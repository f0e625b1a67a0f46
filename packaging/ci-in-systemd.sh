#!/bin/bash
# The scheduled jobs under systemd, run by packaging/ci-test.sh inside the Debian 12 root
# booted with systemd-nspawn (systemd is PID 1 there), after ci-in-root.sh has installed
# the package and set up /etc/repofs/system.conf as the example job file, unchanged.
# Each service runs as the unit says (user, capability, ProtectSystem=, seccomp filter,
# ...): nothing here reproduces or relaxes the sandbox, systemd applies it.
set -euo pipefail
export LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset REPOFS_PASSPHRASE REPOFS_PASSPHRASE_FILE REPOFS_PASSCOMMAND REPOFS_REPO

step() { printf '\n== %s\n' "$*"; }
fail() { echo "ci-in-systemd: FAIL: $*" >&2; exit 1; }
repo=/var/lib/repofs/system
as_admin() { REPOFS_PASSPHRASE_FILE=/etc/repofs/system.passphrase repofs "$@" -r "$repo"; }
count() { as_admin snapshots --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
run_unit() {  # start a oneshot service and wait for it; show its log; fail if it failed
  local unit=$1 rc=0
  systemctl start "$unit" || rc=$?
  journalctl -q -o cat -u "$unit" --no-pager | tail -n 12
  [ "$rc" -eq 0 ] || { systemctl status --no-pager "$unit" | tail -n 5; fail "$unit failed"; }
}
owned_by_repofs() {
  local others
  others=$(find "$repo" ! -user _repofs | head -n 5)
  [ -z "$others" ] || fail "repository files not owned by _repofs after $1: $others"
}
work=$(mktemp -d)

state=""
for _ in $(seq 120); do  # "running" or "degraded" once booted; nothing before it answers
  state=$(systemctl is-system-running --wait 2>/dev/null) && break
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
step "systemd is PID 1: ${state:-no answer}"
cmp /etc/repofs/system.conf /usr/share/doc/repofs/examples/example.conf ||
  fail "the job file is not the example"
systemctl show -p User -p CapabilityBoundingSet -p AmbientCapabilities -p ProtectSystem \
  -p ProtectHome -p NoNewPrivileges -p MemoryDenyWriteExecute repofs-create@system.service

step "repofs-create@system.service: the example job (path = /root among others)"
day=$(date +%F)
run_unit repofs-create@system.service
owned_by_repofs create
as_admin restore latest:root/ci-secret.txt --target "$work/root" >/dev/null
cmp /root/ci-secret.txt "$work/root/ci-secret.txt"
as_admin restore latest:home/ci-alice/private.txt --target "$work/alice" >/dev/null
cmp /home/ci-alice/private.txt "$work/alice/private.txt"
echo "the unit read /root and a 0700 home as _repofs through CAP_DAC_READ_SEARCH"

step "a second backup, then repofs-forget@system.service (keep rules of the example)"
echo "second run" > /root/ci-second.txt
run_unit repofs-create@system.service
before=$(count)
run_unit repofs-forget@system.service
after=$(count)
echo "snapshots: $before before forget, $after after"
if [ "$day" = "$(date +%F)" ]; then
  [ "$after" -eq 1 ] || fail "two snapshots of one day: keep-daily keeps one, not $after"
fi
journalctl -q -o cat -u repofs-forget@system.service --no-pager | grep -q "condemn" ||
  fail "prune did not run after forget"
as_admin restore latest:root/ci-second.txt --target "$work/second" >/dev/null
cmp /root/ci-second.txt "$work/second/ci-second.txt"
owned_by_repofs "forget and prune"
echo "forget removed by the job's keep rules and prune ran, both as _repofs"

step "repofs-check@system.service"
run_unit repofs-check@system.service
journalctl -q -o cat -u repofs-check@system.service --no-pager | grep -q "no problems found" ||
  fail "check did not report an intact repository"

step "timers"
systemctl enable --now repofs-create@system.timer repofs-forget@system.timer \
  repofs-check@system.timer
systemctl list-timers --all --no-pager 'repofs-*'
rm -rf "$work"
