#!/usr/bin/env bash
# A small Python venv (outside the repo) for the backend tooling:
#   elasticsearch  — the client observability/elk/setup.py uses (same as the compose job)
#   check-jsonschema — validates docker-compose.yaml against the compose-spec schema
# Its stamp is the requirements list, so a second run is instant.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$SAGASCOPE_CACHE/elk-venv"
REQS="$REPO_ROOT/observability/elk/requirements.txt"
STAMP="$VENV/.sagascope-$(fingerprint "$REQS")"
if [[ -f "$STAMP" ]]; then
  log "tool venv cached: $VENV"
  exit 0
fi
log "creating tool venv $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
rm -f "$VENV"/.sagascope-* && touch "$STAMP"
log "tool venv ready: $("$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -iE '^(elasticsearch|check-jsonschema) ' | tr -s ' ' | paste -sd, -)"
