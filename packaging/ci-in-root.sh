#!/bin/bash
# The package test proper, run by packaging/ci-test.sh inside a fresh Debian 12 root
# where it has just installed repofs.deb (and only what that package depends on).
# It uses the installed program only: /usr/bin/repofs, the man pages, the completions,
# /usr/lib/repofs/repofs-job with a job in /etc/repofs, and the maintainer scripts.
# It ends by setting up the example job file, unchanged, as /etc/repofs/system.conf:
# ci-test.sh then boots this root with systemd and runs ci-in-systemd.sh, which starts
# the units; "ci-in-root.sh purge" comes last.
set -euo pipefail
export LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBCONF_NOWARNINGS=yes
unset REPOFS_PASSPHRASE REPOFS_PASSPHRASE_FILE REPOFS_PASSCOMMAND REPOFS_REPO REPOFS_AUDIT_SOCKET

step() { printf '\n== %s\n' "$*"; }
fail() { echo "ci-in-root: FAIL: $*" >&2; exit 1; }

if [ "${1:-}" = purge ]; then
  step "purge"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq repofs >/dev/null
  [ ! -e /usr/lib/repofs ] || fail "/usr/lib/repofs left behind: $(find /usr/lib/repofs | head)"
  [ ! -e /usr/bin/repofs ] || fail "/usr/bin/repofs left behind"
  [ -d /var/lib/repofs/ci/keys ] || fail "purge removed the repositories in /var/lib/repofs"
  echo "purged; the repositories in /var/lib/repofs are kept"
  exit 0
fi

step "repofs --version"
repofs --version
[ "$(readlink -f /usr/lib/repofs/venv/bin/python3)" = "$(readlink -f /usr/bin/python3)" ] ||
  fail "the environment does not run Debian's python3"

step "man pages"
man -w repofs
man -w 5 repofs-format
man -w 8 repofs-job
for unit in create forget check; do
  man -w 8 "repofs-$unit@.service" >/dev/null && man -w 8 "repofs-$unit@.timer" >/dev/null ||
    fail "no man page for repofs-$unit@.service or its timer"
done
for cmd in $(repofs --help | awk '/^Commands:/ { on = 1; next } on && NF { print $1 }'); do
  man -w "repofs-$cmd" >/dev/null || fail "no man page for 'repofs $cmd'"
done
echo "every command has a man page"

step "completions"
bash -c '. /usr/share/bash-completion/completions/repofs && complete -p repofs'
words=$(COMP_WORDS="repofs res" COMP_CWORD=1 _REPOFS_COMPLETE=bash_complete repofs)
printf '%s\n' "$words"
[ "$words" = "plain,restore" ] || fail "bash completion of 'repofs res'"
words=$(COMP_WORDS="repofs sta" COMP_CWORD=1 _REPOFS_COMPLETE=bash_complete repofs)
[ "$words" = "plain,stats" ] || fail "bash completion of 'repofs sta': $words"
words=$(COMP_WORDS="repofs key ex" COMP_CWORD=2 _REPOFS_COMPLETE=bash_complete repofs)
[ "$words" = "plain,export" ] || fail "bash completion of 'repofs key ex': $words"
grep -q '^#compdef repofs' /usr/share/zsh/vendor-completions/_repofs
grep -q '_REPOFS_COMPLETE=zsh_complete' /usr/share/zsh/vendor-completions/_repofs
grep -q '_REPOFS_COMPLETE=fish_complete' /usr/share/fish/vendor_completions.d/repofs.fish
echo "bash, zsh and fish completions installed"

step "init / create / restore as root"
work=$(mktemp -d)
export REPOFS_REPO=$work/repo REPOFS_PASSPHRASE="ci passphrase"
repofs init
repofs create --tag ci /etc /usr/share/doc/repofs
repofs snapshots
repofs restore latest --target "$work/restored"
diff -r --no-dereference /etc "$work/restored/etc"
diff -r --no-dereference /usr/share/doc/repofs "$work/restored/usr/share/doc/repofs"
echo "restored trees are identical"

step "audit record of the restore"
sock=$work/audit.sock
python3 - "$sock" > "$work/audit.log" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
print(s.recv(65536).decode())
EOF
receiver=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
REPOFS_AUDIT_SOCKET=$sock repofs restore latest:etc/debian_version --target "$work/one" >/dev/null
wait "$receiver"
cat "$work/audit.log"
grep -q 'repofs-audit\[[0-9]*\]: event=restore uid=0 user=root repo=[0-9a-f]\{64\} key=[0-9a-f]\{64\}' \
  "$work/audit.log" || fail "no audit record"
! grep -q "ci passphrase" "$work/audit.log" || fail "the passphrase is in the audit log"

if [ -e /dev/fuse ]; then
  step "mount"
  mkdir "$work/mnt"
  repofs mount "$work/mnt"
  cmp "$work/mnt/snapshots/latest/etc/debian_version" /etc/debian_version
  repofs umount "$work/mnt"
  echo "mounted, read and unmounted"
fi
unset REPOFS_REPO REPOFS_PASSPHRASE

step "a job in /etc/repofs, as repofs-create@ci.service runs it"
getent passwd _repofs
src=/srv/ci-src
mkdir -p "$src/private" "$src/other"
echo "only root reads this" > "$src/private/secret.txt"
chmod 0700 "$src/private"
chmod 0600 "$src/private/secret.txt"
echo "nobody's file" > "$src/other/nobody.txt"
chown nobody:nogroup "$src/other/nobody.txt"
chmod 0600 "$src/other/nobody.txt"
head -c 3000000 /dev/urandom > "$src/data.bin"
echo scratch > "$src/skip.tmp"
(umask 077 && head -c 32 /dev/urandom | base64 > /etc/repofs/ci.passphrase &&
 head -c 32 /dev/urandom | base64 > /etc/repofs/ci.admin-passphrase)
sed -e 's|^repository = .*|repository = /var/lib/repofs/ci|' \
    -e 's|^passphrase-file = .*|passphrase-file = /etc/repofs/ci.passphrase|' \
    -e 's|^admin-passphrase-file = .*|admin-passphrase-file = /etc/repofs/ci.admin-passphrase|' \
    -e '/^path = /d' -e '/^exclude = /d' \
    /usr/share/doc/repofs/examples/example.conf > /etc/repofs/ci.conf
printf 'path = %s\nexclude = *.tmp\n' "$src" >> /etc/repofs/ci.conf
/usr/lib/repofs/repofs-job show ci
/usr/lib/repofs/repofs-job init ci
/usr/lib/repofs/repofs-job create ci
not_theirs=$(find /var/lib/repofs/ci ! -user _repofs | head -n 5)
[ -z "$not_theirs" ] || fail "repository files not owned by _repofs: $not_theirs"
REPOFS_PASSPHRASE_FILE=/etc/repofs/ci.passphrase \
  repofs restore -r /var/lib/repofs/ci latest --target "$work/job"
rm "$src/skip.tmp"
diff -r "$src" "$work/job$src"
[ "$(stat -c %U "$work/job$src/other/nobody.txt")" = nobody ]
echo "the job read root-only and other users' files as _repofs, and restored them"

# The unit sets MemoryDenyWriteExecute=yes; the kernel's own switch for it (PR_SET_MDWE,
# Linux >= 6.3, kept across execve) shows the whole job runs without W+X memory.
echo "changed" >> "$src/data.bin"
python3 - <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print(f"(this kernel has no PR_SET_MDWE: {os.strerror(ctypes.get_errno())}; plain run)")
else:
    print("running the job again under MemoryDenyWriteExecute (PR_SET_MDWE)")
sys.stdout.flush()
os.execv("/usr/lib/repofs/repofs-job", ["repofs-job", "create", "ci"])
EOF
REPOFS_PASSPHRASE_FILE=/etc/repofs/ci.passphrase \
  repofs restore -r /var/lib/repofs/ci latest:srv/ci-src/data.bin --target "$work/again"
cmp "$src/data.bin" "$work/again/data.bin"

chmod 0644 /etc/repofs/ci.passphrase
if out=$(/usr/lib/repofs/repofs-job show ci 2>&1); then
  fail "a world-readable passphrase file was accepted"
fi
echo "refused: $out"
chmod 0600 /etc/repofs/ci.passphrase

step "forget and prune through repofs-job as _repofs (the job's keep rules)"
/usr/lib/repofs/repofs-job forget ci
not_theirs=$(find /var/lib/repofs/ci ! -user _repofs | head -n 5)
[ -z "$not_theirs" ] || fail "forget or prune left files not owned by _repofs: $not_theirs"
sed -i '/^keep-/d' /etc/repofs/ci.conf
if out=$(/usr/lib/repofs/repofs-job forget ci 2>&1); then
  fail "forget without a keep rule was run"
fi
echo "refused: $out"

step "the example job file, unchanged, as /etc/repofs/system.conf (started under systemd next)"
cp /usr/share/doc/repofs/examples/example.conf /etc/repofs/system.conf
(umask 077 && head -c 32 /dev/urandom | base64 > /etc/repofs/system.passphrase &&
 head -c 32 /dev/urandom | base64 > /etc/repofs/system.admin-passphrase)
# Readable only through CAP_DAC_READ_SEARCH: root's home, and a home at mode 0700.
(umask 077 && echo "only root reads this" > /root/ci-secret.txt)
mkdir -m 0700 /home/ci-alice
(umask 077 && echo "alice's" > /home/ci-alice/private.txt)
chown -R nobody:nogroup /home/ci-alice
/usr/lib/repofs/repofs-job show system
/usr/lib/repofs/repofs-job init system

step "systemd units (with Debian 12's systemd installed)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
for unit in create forget check; do
  systemd-analyze verify "repofs-$unit@system.service" "repofs-$unit@system.timer"
  # Exposure 0-100 (shown as 0.0-10.0); the create unit as designed rates 16 ("1.6 OK").
  systemd-analyze security --offline=true --threshold=20 --no-pager \
    "repofs-$unit@system.service" | tail -n 1
done
systemd-analyze calendar --iterations=1 daily | sed -n 's/^ *Next elapse: /next daily run: /p'
rm -rf "$work"
