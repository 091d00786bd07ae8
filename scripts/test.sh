#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: build the virtualenvs, install, test.
#
#   bash scripts/test.sh            # everything (openai 3.x), then the client side again on openai 2.x
#
# PostgreSQL tests run when AXME_TEST_POSTGRES_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/test);
# browser tests run when /usr/bin/chromium exists. Otherwise they skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

venv() {  # venv DIR OPENAI_SPEC
    local dir="$1" spec="$2"
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[gateway,test,otel]" "$spec"
    echo "== $("$dir/bin/python" -c 'import openai; print("openai", openai.__version__)') in $dir"
}

venv .venv "openai>=3,<4"
.venv/bin/python -m pytest -q -p no:cacheprovider tests

venv .venv-openai2 "openai>=2,<3"
.venv-openai2/bin/python -m pytest -q -p no:cacheprovider tests/client tests/test_pricing.py $(ls -d tests/transport 2>/dev/null)
