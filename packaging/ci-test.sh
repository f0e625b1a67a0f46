#!/usr/bin/env bash
# CI proof of the Debian package, as root on Debian 12:
#   1. build the .deb with dpkg-buildpackage (packaging/build-deb.sh);
#   2. lintian: no errors (warnings are shown);
#   3. a clean Debian 12 root made by mmdebstrap (minbase + man-db), cached in
#      $REPOFS_CI_CACHE (default /var/cache/repofs-ci) and used read-only under an
#      overlay, so every run starts from the same pristine root;
#   4. apt-get install ./repofs.deb there, which must pull in every dependency;
#   5. packaging/ci-in-root.sh in that root: --version, man -w, completions, an
#      init/create/restore round trip, the audit record, a mount, a job in
#      /etc/repofs run as _repofs, forget and prune, the example job set up unchanged;
#   6. that root booted with systemd-nspawn (systemd as PID 1): packaging/ci-in-systemd.sh
#      starts repofs-create@, repofs-forget@ and repofs-check@ for the example job, so
#      the units' own sandboxing is what runs; then a purge (ci-in-root.sh purge).
# Prints how long each step took. Re-runs reuse the root (rebuilt after a week or when
# the recipe changes), the downloaded .debs and pip's cache.
#
#   packaging/ci-test.sh              build, lint, install, test
#   packaging/ci-test.sh --deb FILE   test an existing .deb (no build, no lintian)
#   REPOFS_DEB_GIT_REV=HEAD packaging/ci-test.sh   build a commit, not the work tree
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

cache=${REPOFS_CI_CACHE:-/var/cache/repofs-ci}
suite=bookworm
# mmdebstrap's default mirror, with the -updates and -security suites it adds for a
# stable release; REPOFS_CI_MIRRORS may name others (mmdebstrap MIRROR arguments,
# separated by '|', e.g. "deb http://mirror.example/debian bookworm main|...").
mirrors=${REPOFS_CI_MIRRORS:-}
max_age_days=7

deb=""
if [ "${1:-}" = --deb ]; then
  deb=$(realpath "${2:?--deb needs a file}")
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ci-test: run as root (it builds a chroot and mounts inside it)" >&2
  exit 2
fi

start=$(date +%s)
last=$start
timings=()
lap() {
  local now; now=$(date +%s)
  timings+=("$(printf '%4ds  %s' $((now - last)) "$1")")
  printf '\n-- %s: %ds (total %ds)\n' "$1" $((now - last)) $((now - start))
  last=$now
}
status=0
report() {
  local rc=$status
  echo
  echo "== packaging/ci-test.sh timings"
  printf '%s\n' "${timings[@]}"
  printf '%4ds  total (%s)\n' $(($(date +%s) - start)) "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)"
}
trap 'status=$?; report' EXIT

# -- host tools ----------------------------------------------------------------------
need=(dpkg-dev debhelper lintian mmdebstrap chrpath go-md2man mandoc python3-venv
      python3-dev libfuse3-dev pkg-config gcc ca-certificates util-linux systemd-container)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ci-test: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
mkdir -p "$cache/pip" "$cache/archives/partial"
# One run at a time: the cached root, build/deb and the caches are shared (the work
# tree may be too).
exec 9> "$cache/lock"
if ! flock -n 9; then
  echo "ci-test: waiting for another run to finish ($cache/lock)"
  flock -w 1800 9
fi
lap "host tools"

# -- build and lint ------------------------------------------------------------------
if [ -z "$deb" ]; then
  echo "== build the .deb (log: build/deb/build.log)"
  mkdir -p build/deb
  if ! PIP_CACHE_DIR=$cache/pip REPOFS_INSTALL_BUILD_DEPS=1 packaging/build-deb.sh build/deb \
      > build/deb/build.log 2>&1; then
    tail -n 40 build/deb/build.log
    echo "ci-test: the package build failed (build/deb/build.log)" >&2
    exit 1
  fi
  deb=$(ls "$top"/build/deb/repofs_*.deb)
  ls -l "$deb"
  lap "dpkg-buildpackage"

  echo "== lintian"
  lintian_rc=0
  lintian_out=$(lintian --fail-on error --display-level '>=warning' \
                build/deb/repofs_*.changes 2>&1) || lintian_rc=$?
  printf '%s\n' "$lintian_out" | grep -v '^running with root privileges' || true
  if [ "$lintian_rc" -ne 0 ]; then
    echo "ci-test: lintian reports errors (status $lintian_rc)" >&2
    exit 1
  fi
  echo "lintian: no errors"
  lap "lintian"
fi

# -- a clean Debian 12 root, cached ----------------------------------------------------
recipe="mmdebstrap --variant=minbase --include=man-db --skip=cleanup/apt/lists $suite $mirrors"
base=$cache/$suite-root
stamp=$cache/$suite-root.recipe
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] &&
   [ -n "$(find "$stamp" -mtime -"$max_age_days")" ] && [ -x "$base/usr/bin/apt-get" ]; then
  echo "== reusing the Debian 12 root in $base (made $(date -r "$stamp" +%F))"
else
  echo "== making a Debian 12 root with mmdebstrap in $base"
  rm -rf "$base" "$stamp"
  mirror_args=()
  if [ -n "$mirrors" ]; then IFS='|' read -r -a mirror_args <<< "$mirrors"; fi
  mmdebstrap --quiet --variant=minbase --include=man-db --skip=cleanup/apt/lists \
    --aptopt='Acquire::Languages "none"' "$suite" "$base" "${mirror_args[@]}"
  printf '%s' "$recipe" > "$stamp"
fi
lap "Debian 12 root"

# -- install and test inside it, in a private mount namespace ---------------------------
# Every mount below lives in the namespace and disappears with it, whatever happens.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/repofs-ci.XXXXXX")
cleanup() { rm -rf "$scratch"; }
trap 'status=$?; cleanup; report' EXIT
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/root"
cp "$deb" "$scratch/repofs.deb"
cp packaging/ci-in-root.sh packaging/ci-in-systemd.sh "$scratch/"

# shellcheck disable=SC2016  # the script below expands its own variables, in the namespace
unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
  base=$1 scratch=$2 archives=$3
  root=$scratch/root
  mount -t overlay overlay \
    -o "lowerdir=$base,upperdir=$scratch/upper,workdir=$scratch/work" "$root"
  chroot_mounts() {
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
    mount --bind "$archives" "$root/var/cache/apt/archives"
  }
  chroot_mounts
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp "$scratch/repofs.deb" "$scratch/ci-in-root.sh" "$root/tmp/"
  install -D -m 0755 "$scratch/ci-in-systemd.sh" "$root/opt/repofs-ci/ci-in-systemd.sh"
  in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root TERM=dumb DEBIAN_FRONTEND=noninteractive "$@"; }
  install_deb() {
    in_root apt-get install -y -q --no-install-recommends /tmp/repofs.deb
  }
  echo "== apt-get install ./repofs.deb in the clean root"
  t0=$(date +%s)
  if ! install_deb > "$scratch/apt.log" 2>&1; then
    echo "(first attempt failed, package lists may be stale: apt-get update and retry)"
    in_root apt-get update -q > "$scratch/apt.log" 2>&1
    install_deb >> "$scratch/apt.log" 2>&1 || { cat "$scratch/apt.log"; exit 1; }
  fi
  grep -E "^(Setting up|The following NEW)" "$scratch/apt.log" | head -n 40
  echo "-- installed in $(( $(date +%s) - t0 ))s"
  echo "== packaging/ci-in-root.sh"
  in_root /bin/bash /tmp/ci-in-root.sh

  echo
  echo "== packaging/ci-in-systemd.sh: the root booted with systemd-nspawn, units started"
  umount -R "$root/dev" "$root/proc" "$root/var/cache/apt/archives"
  # No machined or host systemd here: --register=no --keep-unit. The container is
  # entered with nsenter once its systemd (the child of nspawn, PID 1 inside) is up.
  systemd-nspawn --quiet --register=no --keep-unit --directory="$root" --boot \
    --console=pipe < /dev/null > "$scratch/boot.log" 2>&1 &
  nspawn=$!
  init=""
  for _ in $(seq 300); do
    for p in $(pgrep -P "$nspawn" 2>/dev/null); do
      if grep -qE "^NSpid:[[:space:]]+$p[[:space:]]+1\$" "/proc/$p/status"; then init=$p; fi
    done
    [ -n "$init" ] && break
    kill -0 "$nspawn" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$init" ]; then
    cat "$scratch/boot.log"; echo "ci-test: the root did not boot" >&2; exit 1
  fi
  # systemd answers systemctl once its private socket exists (a loaded machine boots slowly)
  for _ in $(seq 600); do
    nsenter --target "$init" --mount /usr/bin/test -S /run/systemd/private && break
    sleep 0.2
  done
  rc=0
  nsenter --target "$init" --all /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb /bin/bash /opt/repofs-ci/ci-in-systemd.sh || rc=$?
  kill -s SIGRTMIN+4 "$init"  # systemd powers off on this signal (no D-Bus in the root)
  for _ in $(seq 300); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$nspawn" 2>/dev/null || true
  wait "$nspawn" || true
  if [ "$rc" -ne 0 ]; then
    echo "-- boot log"; tail -n 30 "$scratch/boot.log"; exit "$rc"
  fi

  chroot_mounts
  in_root /bin/bash /tmp/ci-in-root.sh purge
' ci-root "$base" "$scratch" "$cache/archives"
lap "install and test in the clean root"
echo
echo "ci-test: the package builds, is lintian-clean and works on a clean Debian 12"
