#!/usr/bin/env bash
# The device check (issue 24): on a machine with a CUDA GPU, from the repository root, in under 5 minutes:
#   bash tests/gpu/check.sh
# It runs this checkout from its folder (PYTHONPATH) with the python3 whose torch sees the GPU, installing
# nothing unless ROHYDR_WHEELS names a folder of wheels for what that python lacks (pydantic, pydantic-core,
# annotated-types, typing-inspection on an image without them; pip download them for its Python version).
# Prints one table (tests/gpu/check.py); exits non-zero when a mode failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
if [ -n "${ROHYDR_WHEELS:-}" ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/rohydr-check-site "$ROHYDR_WHEELS"/*.whl
    export PYTHONPATH=/tmp/rohydr-check-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" tests/gpu/check.py "$@"
