#!/bin/sh
# Runs every test of `make check`: the unit tests and the integration tests, each against
# the normal build and the ASan+UBSan build, and fails if any SysV segment is left behind.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}

snapshot() { awk 'NR > 1 { print $2 }' /proc/sysvipc/shm | sort; }
before=$(snapshot)
failed=0

step() {
        echo "== $1"
        shift
        "$@" || { echo "FAILED: $*"; failed=$((failed + 1)); }
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

step "unit tests" build/test-unit
step "unit tests (ASan+UBSan)" build/asan/test-unit
step "library tests" build/test-lib
step "library tests (ASan+UBSan)" env SHMBROKERD=build/asan/shmbrokerd build/asan/test-lib
step "library exports match client/libshmbroker.sym" tests/check-exports.sh
step "daemon/ includes in one direction" tests/check-layers.sh
step "man pages: libshmbroker(3) against the header and exports, the options against --help" "$PYTHON" tests/check-man.py
step "make bench's report: verdicts and sentences from the figures alone (synthetic figures)" \
        "$PYTHON" tests/check-bench-report.py
for t in request config block; do
        step "fuzz corpus $t (ASan+UBSan)" sh -c "build/asan/fuzz-$t tests/fuzz/corpus/$t/*"
done
step "integration tests" "$PYTHON" -m pytest -q -p no:cacheprovider tests/integration
step "integration tests (ASan+UBSan daemon)" env SHMBROKERD=build/asan/shmbrokerd \
        "$PYTHON" -m pytest -q -p no:cacheprovider tests/integration

step "README.md: every code block runs as written (tests/check-readme.py)" "$PYTHON" tests/check-readme.py
step "chaos, short (make chaos runs longer)" "$PYTHON" tests/chaos.py --seconds 5

# Exit status 77: skipped (said why), not failed.
skippable() { "$@"; rc=$?; [ "$rc" = 77 ] && return 0; return "$rc"; }
step "build: make -j with the packages missing, clang, install and uninstall" skippable tests/check-build.sh
step "Debian packages: make deb, lintian, dpkg -i, the installed daemon and binding, dpkg -r, dpkg -P" skippable tests/check-deb.sh

after=$(snapshot)
if [ "$before" != "$after" ]; then
        echo "FAILED: SysV segments left behind:"
        echo "$after" | grep -vxF "$before" || true
        failed=$((failed + 1))
fi
if [ "$failed" -ne 0 ]; then
        echo "make check: $failed step(s) failed"
        exit 1
fi
echo "make check: every step passed, no segment left behind"
