#!/usr/bin/env bash
# Set, read and report cost policies from the command line.
# Needs AXME_GATEWAY_URL and an admin AXME_API_KEY (or pass --gateway/--api-key).
set -euo pipefail
AGENT="${1:-agent://acme/production/research-agent}"
AXME="${AXME_METER:-axme-meter}"

$AXME policy set "$AGENT" --max-cost-per-day 50 --action block --alert-thresholds 0.5,0.8,1.0
$AXME policy get "$AGENT"
$AXME report --window day
