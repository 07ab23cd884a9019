#!/usr/bin/env bash
# Makes .venv-peers: the Python environment the `peers` benchmark scenario runs Quix Streams,
# Bytewax and Faust in (bench/scenarios/peers.py). It holds only the `peers` extra of
# pyproject.toml (and what those packages pull in), not rtml: Quix Streams pins pydantic below
# the version rtml's environment has, and the peer programs (bench/peer_jobs/) import nothing of
# rtml's dependencies. Idempotent; safe to re-run after the extra changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${RTML_PEERS_VENV:-.venv-peers}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
mapfile -t packages < <("$VENV/bin/python" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["peers"]))
PY
)
echo "bench peers: installing ${packages[*]} into $VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "${packages[@]}"
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -iE '^(quixstreams|bytewax|faust-streaming) '
