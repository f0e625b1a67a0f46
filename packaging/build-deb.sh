#!/usr/bin/env bash
# Build the repofs .deb from this source tree with Debian's own tools:
#
#   packaging/build-deb.sh [OUTDIR]      (default OUTDIR: build/deb)
#
# Copies what the package is built from (pyproject.toml, repofs/, cli/, man/,
# packaging/, the top-level documents) into a scratch source tree, moves
# packaging/debian there to debian/, and runs dpkg-buildpackage -b. The .deb,
# .buildinfo and .changes land in OUTDIR. Build dependencies must be installed
# (dpkg-checkbuilddeps says which are missing; REPOFS_INSTALL_BUILD_DEPS=1 lets
# this script apt-get install them). Needs the network for the pinned Python
# wheels unless pip is pointed at a local copy (packaging/README.md).
# REPOFS_DEB_GIT_REV=HEAD (or any commit) builds that commit instead of the work
# tree, which in a shared checkout may hold other people's unfinished files.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build/deb}")

if ! missing=$(dpkg-checkbuilddeps packaging/debian/control 2>&1); then
  if [ "${REPOFS_INSTALL_BUILD_DEPS:-0}" = 1 ]; then
    pkgs=$(printf '%s\n' "$missing" | sed -n 's/.*Unmet build dependencies: //p' |
           sed -E 's/\([^)]*\)//g')
    echo "build-deb: installing build dependencies: $pkgs" >&2
    # shellcheck disable=SC2086  # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    printf 'build-deb: %s\n(or run with REPOFS_INSTALL_BUILD_DEPS=1)\n' "$missing" >&2
    exit 1
  fi
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/repofs-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
src="$stage/repofs"
mkdir -p "$src" "$out"
inputs=(pyproject.toml README.md SECURITY.md CHANGELOG.md repofs cli man packaging)
if [ -n "${REPOFS_DEB_GIT_REV:-}" ]; then
  echo "build-deb: building git $REPOFS_DEB_GIT_REV ($(git rev-parse --short "$REPOFS_DEB_GIT_REV"))"
  git archive --format=tar "$REPOFS_DEB_GIT_REV" "${inputs[@]}" | tar -x -C "$src"
else
  tar -c --exclude=__pycache__ --exclude='*.pyc' "${inputs[@]}" | tar -x -C "$src"
fi
mv "$src/packaging/debian" "$src/debian"

version=$(/usr/bin/python3 -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$src/pyproject.toml")
deb_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
if [ "${deb_version%-*}" != "$version" ]; then
  echo "build-deb: debian/changelog says $deb_version, pyproject.toml $version:" \
       "add a changelog entry (dch -v $version-1)" >&2
  exit 1
fi

(cd "$src" && dpkg-buildpackage -b -us -uc --no-sign -j"$(nproc)")
rm -f "$out"/repofs_*
mv "$stage"/repofs_* "$out"/
ls -l "$out"
