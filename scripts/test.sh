#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint, types, layering, then pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 2
export PATH="$PWD/.venv/bin:$PATH"
status=0
echo "== ruff" && ruff check repofs cli tests bench packaging || status=1
echo "== mypy --strict" && mypy --strict repofs || status=1
echo "== import-linter" && lint-imports || status=1
echo "== pytest"
pytest -q -p no:cacheprovider "$@" tests
rc=$?
if [ "$rc" -eq 5 ]; then echo "test.sh: pytest collected no tests: failing" >&2; rc=1; fi
[ "$rc" -ne 0 ] && status=$rc
echo "== debian package (packaging/ci-test.sh)" && bash packaging/ci-test.sh || status=1
exit "$status"
