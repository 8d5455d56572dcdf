# Sourced by scripts/run and scripts/test: make .venv if missing and install
# the project (with the extras in $FLIN_EXTRAS) when setup.cfg changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "scripts: creating .venv with $($PY --version)" >&2
    "$PY" -m venv .venv
fi
extras="${FLIN_EXTRAS:-}"
stamp=".venv/.flin-installed${extras:+-$extras}"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "scripts: installing flin${extras:+[$extras]} into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" >&2
    echo "$want" > "$stamp"
fi
