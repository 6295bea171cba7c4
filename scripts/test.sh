#!/usr/bin/env bash
# Configure, build and run the whole test suite: the command README and CI use.
#
#   scripts/test.sh          Release build in build/
#   scripts/test.sh asan     AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
#   scripts/test.sh tsan     ThreadSanitizer build in build-tsan/: the integration and
#                            end-to-end tests only (the units run no concurrent code)
#
# First installs the Debian packages the build and the tests need, only those
# missing (scripts/deps.sh; sudo when not root). The last lines printed are
# ctest's summary.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

preset=${1:-release}
case "$preset" in
  release | debug | asan | tsan) ;;
  *) echo "usage: scripts/test.sh [release|debug|asan|tsan]" >&2; exit 2 ;;
esac

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
ntp_deps build test  # gcc's own sanitizer runtimes come with build-essential

cmake --preset "$preset"
cmake --build --preset "$preset"
ctest --preset "$preset"
