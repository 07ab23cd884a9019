#!/usr/bin/env bash
# Soak run (not in CI): a private stack (free ports, temporary state dir), steady synthetic load
# through the fraud pipeline, every actor's RSS and the lag sampled; see scripts/soak.py.
#   scripts/soak.sh --minutes 30 --rate 1000 --output soak-results
#   scripts/soak.sh --minutes 30 --rate 1000 --actors 2 --users 20000 --historical-days 40 \
#     --scoring --output docs/soak   (the committed run: docs/operations.md)
# --scoring trains small models when there are none and deploys the Serve app.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
state=$(mktemp -d -t rtml-soak-XXXXXX)
free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export RTML_STATE_DIR="$state"
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$(free_port)" KAFKA_CONTROLLER_PORT="$(free_port)"
export REDIS_URL="redis://127.0.0.1:$(free_port)/0"
export RTML_FRAUD_SCORING="${RTML_FRAUD_SCORING:-false}"
cleanup() {
  "$VENV/bin/rtml" infra down >/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
"$VENV/bin/rtml" infra up
"$VENV/bin/python" scripts/soak.py "$@"
