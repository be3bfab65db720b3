#!/usr/bin/env bash
# buf for protos/: install (once, cached), lint, breaking.
#
#   scripts/contracts/buf.sh install    # build buf into ${SAGASCOPE_CACHE:-~/.cache/sagascope}/bin (Go module proxy)
#   scripts/contracts/buf.sh lint       # buf lint protos (STANDARD rules, protos/buf.yaml)
#   scripts/contracts/buf.sh breaking   # buf breaking protos against main (see below)
#
# `breaking` compares the working tree's protos/ with protos/ at, in order of preference:
#   $BUF_AGAINST_REF (any git ref), the merge-base of HEAD and origin/main, origin/main,
#   the merge-base of HEAD and main, main. It prints which one it used. When HEAD *is*
#   that commit (a fresh clone of main, or CI on main), the check still runs and
#   compares uncommitted changes only; that is said too, so a green result is not misread.
set -euo pipefail

BUF_VERSION="${BUF_VERSION:-v1.75.0}"
CACHE="${SAGASCOPE_CACHE:-$HOME/.cache/sagascope}"
BUF="$CACHE/bin/buf"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

install_buf() {
  if [[ -x "$BUF" ]] && [[ "$("$BUF" --version 2>/dev/null)" == "${BUF_VERSION#v}" ]]; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "buf.sh: Go is required to build buf $BUF_VERSION (go install ...); install Go >= 1.24" >&2
    exit 2
  fi
  echo "buf.sh: building buf $BUF_VERSION into $CACHE/bin (once; later runs reuse it)" >&2
  mkdir -p "$CACHE/bin"
  GOBIN="$CACHE/bin" GOFLAGS=-mod=mod go install "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION"
  "$BUF" --version >&2
}

against_ref() {
  if [[ -n "${BUF_AGAINST_REF:-}" ]]; then
    echo "$BUF_AGAINST_REF"; return
  fi
  local base
  for branch in origin/main main; do
    if git rev-parse --verify --quiet "$branch^{commit}" >/dev/null; then
      if base="$(git merge-base HEAD "$branch" 2>/dev/null)"; then
        echo "$base"; return
      fi
      git rev-parse "$branch^{commit}"; return
    fi
  done
  echo ""
}

cmd="${1:-}"
case "$cmd" in
  install)
    install_buf
    ;;
  lint)
    install_buf
    echo "buf lint protos (rules: protos/buf.yaml)"
    "$BUF" lint protos
    echo "buf lint: OK"
    ;;
  breaking)
    install_buf
    if ! git rev-parse --git-dir >/dev/null 2>&1; then
      echo "buf breaking: not a git checkout, nothing to compare against" >&2; exit 2
    fi
    ref="$(against_ref)"
    if [[ -z "$ref" ]]; then
      echo "buf breaking: no main or origin/main branch to compare against (set BUF_AGAINST_REF)" >&2; exit 2
    fi
    head="$(git rev-parse HEAD)"
    commit="$(git rev-parse "$ref^{commit}")"
    echo "buf breaking protos against commit ${commit:0:12} (ref: ${BUF_AGAINST_REF:-merge-base with main}), subdir protos/"
    if [[ "$commit" == "$head" ]]; then
      echo "  note: that is HEAD itself, so only uncommitted changes to protos/ are compared"
    fi
    # `.git#ref=<sha>` takes any commit; `#branch=` would need a local branch name.
    "$BUF" breaking protos --against "$(git rev-parse --show-toplevel)/.git#ref=$commit,subdir=protos"
    echo "buf breaking: OK (no breaking change against ${commit:0:12})"
    ;;
  *)
    echo "usage: $0 install|lint|breaking" >&2; exit 2
    ;;
esac
