#!/usr/bin/env bash
# The project's test command (the README's and CI's): install and start what the tests need
# (scripts/test-env.sh: PostgreSQL, Chromium, fonts; skipped when present), build the binary,
# run the Rust tests on SQLite and PostgreSQL (nextest when installed), then the browser tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

source scripts/test-env.sh

cargo build --locked --bins

# Run the browser tests even when a Rust test fails, so that one run shows every failure.
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast || status=$?
else
    echo "test.sh: cargo-nextest not found; using cargo test" >&2
    cargo test --workspace --no-fail-fast || status=$?
fi

export BATON_BIN="${BATON_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/baton}"
bash e2e/run.sh || status=$?

exit "$status"
