#!/usr/bin/env bash
# The test command: installs what the tests need, checks style, runs unit and
# integration tests (two workers). Benchmarks live in tests/performance and are not run here.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
python3 -m vmm.guest.builder --quiet --media disk,iso || echo "warning: guest build failed; guest tests will skip" >&2
# the full Debian disk: minutes the first time (mmdebstrap), then cached by package versions
python3 -m vmm.guest.builder --quiet --media debian || echo "warning: Debian disk build failed; its tests will skip" >&2
python3 -m ruff check .
set +e
# A test that fails is run once more (shown as "R" and in the summary): guest tests boot real
# guests under CPU emulation on 2 shared cores, where a slow moment can still exceed a bound.
python3 -m pytest -n 2 -q -rsR -p no:cacheprovider --durations=25 --reruns 1 --reruns-delay 2 "$@"
rc=$?
set -e
[ $rc -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
exit $rc
