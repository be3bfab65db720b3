#!/usr/bin/env bash
# Sloth (SLO specs -> Prometheus burn-rate rules), built once from the Go module proxy at the
# version pinned in .env (SLOTH_VERSION); prints the binary's path. The version is stamped in
# (its release builds do the same), so the generated rules' header names it, not "dev".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version="$(_env_value SLOTH_VERSION)"
export GO_TOOL_LDFLAGS="-X github.com/slok/sloth/internal/info.Version=$version"
exec bash "$(dirname "${BASH_SOURCE[0]}")/go_tool.sh" sloth github.com/slok/sloth/cmd/sloth "$version"
