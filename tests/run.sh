#!/usr/bin/env bash
# The one test command: install everything the tests need, then run every check.
#   bash tests/run.sh            (what .ci/run calls; extra args go to pytest)
# Installs: the package with its [test] extra (pinned by tests/constraints.txt so
# pip does not backtrack through botocore releases), nginx and Azurite for the
# storage-server tests (tests/install_servers.sh), then runs ruff, mypy --strict,
# pytest and a tiny smoke run of the benchmarks so they cannot rot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m pip install --quiet --disable-pip-version-check -c tests/constraints.txt -e '.[test]'
bash tests/install_servers.sh

echo "== ruff"; "$PYTHON" -m ruff check refstore tests benchmarks; "$PYTHON" -m ruff format --check refstore tests benchmarks
echo "== mypy"; "$PYTHON" -m mypy
echo "== benchmark smoke"; "$PYTHON" benchmarks/bench_core.py --smoke
echo "== pytest"; "$PYTHON" -m pytest -q -p no:cacheprovider "$@"
