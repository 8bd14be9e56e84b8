#!/usr/bin/env bash
# Build the Label Studio *server* venv (.venv-labelstudio), kept apart from the project venv
# because label-studio pins its own label-studio-sdk and numpy, which fight our lock.
#
# Idempotent: re-running re-syncs the venv against the lock and does nothing else.
# The lock is regenerated (by hand, when bumping the server) with:
#   echo "label-studio==1.23.2" | uv pip compile - --python-version 3.11 \
#       -o scripts/label-studio-requirements.lock
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LABEL_STUDIO_VENV:-$ROOT/.venv-labelstudio}"
LOCK="$ROOT/scripts/label-studio-requirements.lock"

if [[ ! -x "$VENV/bin/python" ]]; then
    uv venv "$VENV" --python 3.11
fi
uv pip install --python "$VENV/bin/python" -r "$LOCK"
"$VENV/bin/python" -c "import label_studio" >/dev/null 2>&1 || {
    echo "label-studio did not install correctly in $VENV" >&2
    exit 1
}
echo "Label Studio server venv ready: $VENV"
