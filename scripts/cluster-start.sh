#!/usr/bin/env bash
# Launch the rtml pipeline on a running Ray cluster, from its head node: topics, the Serve app,
# then the consumer actors of every pipeline with lag-driven autoscaling (rtml consume
# --autoscale). The start commands of cluster.yaml and deploy/cluster-onprem.yaml run it in the
# background; its log is ~/rtml-pipeline.log there.
#
#   scripts/cluster-start.sh [SERVE_CONFIG]      (default: the built-in Serve config)
#
# Settings come from $RTML_CONFIG (the launcher configs point it at deploy/rtml-cluster.toml)
# and the environment (KAFKA_SASL_PASSWORD, REDIS_PASSWORD: keep secrets out of files).
set -euo pipefail

RTML=${RTML:-$HOME/rtml/.venv/bin/rtml}
export RAY_ADDRESS=${RAY_ADDRESS:-127.0.0.1:6379}
serve_config=${1:-}

"$RTML" infra up  # existing Kafka/Redis: starts nothing, checks them and creates the topics
if [[ -n $serve_config ]]; then
    "$RTML" serve --detach --config-file "$serve_config"
else
    "$RTML" serve --detach --host 0.0.0.0
fi
exec "$RTML" consume --pipelines "${RTML_PIPELINES:-profiles,fraud,recsys}" --autoscale \
    --interval 30
