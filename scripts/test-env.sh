#!/usr/bin/env bash
# Sourced by ./test.sh: make sure what the tests need is installed and running, so that the
# README's test command works on a fresh Debian 12 machine. Idempotent: installed packages
# are skipped, a running PostgreSQL is left alone. Installing needs root (as on CI).
#   - PostgreSQL 15 (Debian's postgresql), reachable at BATON_TEST_PG_URL
#   - Chromium (Debian's chromium) for the browser tests, and CJK fonts so Chinese renders
# Rust (cargo, cargo-nextest optional) and Node 20+ are expected on the machine; Debian 12's
# own nodejs (18) is too old for playwright-core.

export DEBIAN_FRONTEND=noninteractive
export BATON_TEST_PG_URL="${BATON_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

packages=(postgresql chromium fonts-noto-cjk)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-env: missing packages ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
        exit 1
    fi
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

for tool in cargo node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test-env: $tool is not installed" >&2
        exit 1
    fi
done

# PostgreSQL: start the local cluster unless the configured server already answers.
if ! pg_isready -q -d "$BATON_TEST_PG_URL" 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-env: PostgreSQL at BATON_TEST_PG_URL does not answer; start it or run as root" >&2
        exit 1
    fi
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx '15 main'; then
        pg_createcluster 15 main
    fi
    pg_ctlcluster 15 main start || pg_ctlcluster 15 main status >/dev/null
    for _ in $(seq 1 60); do
        if pg_isready -q -h 127.0.0.1 -p 5432; then break; fi
        sleep 1
    done
    pg_isready -h 127.0.0.1 -p 5432
fi
# A cluster started by hand answers but may still lack the password the tests sign in with.
if [ "$(id -u)" -eq 0 ] && ! psql "$BATON_TEST_PG_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
fi
