#!/usr/bin/env bash
# Browser tests: drive Debian's Chromium (/usr/bin/chromium) with playwright-core against the
# real `baton demo` server. Build first (`cargo build --bins`); the binary is taken from
# $BATON_BIN (default ../target/debug/baton relative to e2e/). Screenshots land in
# target/screenshots/. Extra arguments go to `node --test` (e.g. --test-name-pattern=township).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# playwright-core never downloads a browser; say so anyway in case a tool looks.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if ! command -v node >/dev/null 2>&1; then
    echo "e2e: node is not installed (Node 20 or newer is needed)" >&2
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "e2e: Node $(node --version) is too old; playwright-core needs Node 20 or newer" >&2
    exit 1
fi

# Install node packages when missing or when the lock file is newer than the installed tree.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi

started=$(date +%s)
status=0
node --test --test-reporter=spec "$@" tests/*.test.mjs || status=$?
echo "e2e: finished in $(( $(date +%s) - started )) s (exit $status); screenshots in $(cd .. && pwd)/target/screenshots, server log in target/e2e-baton.log" >&2
exit "$status"
