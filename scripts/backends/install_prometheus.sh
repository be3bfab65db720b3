#!/usr/bin/env bash
# Prometheus and promtool for `make stack` come from Debian's package.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  log "prometheus present: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi
[[ "$(id -u)" -eq 0 ]] || die "prometheus is missing and installing it needs root: apt-get install -y prometheus"
log "installing prometheus (Debian package)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
# The package enables a system service on :9090; `make stack` runs its own
# instance with the repo's config, so keep the packaged one stopped.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
log "prometheus installed: $(prometheus --version 2>&1 | head -n1)"
