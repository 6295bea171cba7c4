#!/usr/bin/env bash
# Configure, build and run the whole test suite: the command README and CI use.
# The last lines printed are ctest's summary.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
ctest --test-dir build --output-on-failure -j2
