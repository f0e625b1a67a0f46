#!/usr/bin/env bash
# The main job on a built-in example: install, init, create (twice), list, mount, restore.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

base=$(mktemp -d "${TMPDIR:-/dev/shm}/repofs-demo.XXXXXX")
mnt="$base/mnt"
cleanup() { fusermount3 -uz "$mnt" 2>/dev/null || true; rm -rf "$base"; }
trap cleanup EXIT

src="$base/example"
mkdir -p "$src/docs" "$src/src/pkg" "$src/empty"
printf 'Hello from repofs.\n' > "$src/README"
for i in $(seq 1 50); do printf 'def f%d(x):\n    return x * %d\n' "$i" "$i" > "$src/src/pkg/mod$i.py"; done
head -c 20000000 /dev/urandom > "$src/docs/big.bin"
ln -s ../README "$src/docs/readme-link"
ln "$src/README" "$src/docs/README.hardlink"

export REPOFS_REPO="$base/repo" REPOFS_PASSPHRASE="demo passphrase"
echo "\$ repofs init";                repofs init
echo "\$ repofs create $src";         repofs create --tag demo "$src"
printf 'changed\n' >> "$src/README"
echo "\$ repofs create $src (again)"; repofs create --tag demo "$src"
echo "\$ repofs snapshots";           repofs snapshots
echo "\$ repofs ls -l latest";        repofs ls -l latest | tail -n 5
mkdir -p "$mnt"
if [ -e /dev/fuse ]; then
  echo "\$ repofs mount $mnt";        repofs mount "$mnt"
  echo "\$ ls $mnt/snapshots";        ls "$mnt/snapshots"
  echo "\$ cat .../README (latest)";  cat "$mnt/snapshots/latest${src}/README"
  echo "\$ repofs umount $mnt";       repofs umount "$mnt"
else
  echo "(no /dev/fuse here: skipping the mount step)"
fi
echo "\$ repofs restore latest --target $base/restored"
repofs restore latest --target "$base/restored"
diff -r "$src" "$base/restored$src" && echo "restored tree is identical to the source"
