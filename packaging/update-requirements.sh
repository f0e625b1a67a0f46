#!/usr/bin/env bash
# Re-pin the Python libraries the Debian package bundles, with their hashes.
#
#   packaging/update-requirements.sh            # newest versions pyproject.toml allows
#   packaging/update-requirements.sh -P cryptography   # move one library only
#
# Writes packaging/requirements.txt (runtime, from pyproject.toml) and
# packaging/requirements-build.txt (build tools, from requirements-build.in).
# Hashes come from PyPI itself, for every file of each pinned release (all
# architectures), so a build anywhere verifies what it downloads. Run it when a
# bundled library has a security fix, review the diff, bump debian/changelog.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${PIPTOOLS_VENV:-${TMPDIR:-/tmp}/repofs-piptools}
if [ ! -x "$tools/bin/pip-compile" ]; then
  /usr/bin/python3 -m venv "$tools"
  "$tools/bin/pip" install -q pip-tools
fi
# Debian's interpreter decides the markers (python 3.11); only PyPI (pip's default
# index) is asked, so mirrors configured in pip.conf cannot change what is pinned.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL
compile=("$tools/bin/pip-compile" -q --generate-hashes --strip-extras --no-emit-index-url "$@")
"${compile[@]}" --output-file packaging/requirements.txt pyproject.toml
"${compile[@]}" --allow-unsafe --output-file packaging/requirements-build.txt \
  packaging/requirements-build.in
echo "pinned: $(grep -c '^[a-z]' packaging/requirements.txt) runtime," \
     "$(grep -c '^[a-z]' packaging/requirements-build.txt) build-time libraries"
