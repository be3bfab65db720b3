#!/usr/bin/env bash
# `make k8s-images`: the images the runtime deploy tier runs, built without a registry, and
# loaded into the test cluster's containerd when it is up.
#
#   debian-python  a Debian root filesystem from mmdebstrap (the host's apt sources) with Python
#   service, elk-setup   the project's Dockerfile on it (--build-arg BASE_IMAGE)
#   postgres, nx-27017 (for mongo), jaeger, otelcol, elasticsearch, prometheus
#                  stand-ins for the dev overlay's third-party images (deploy/images/<name>/),
#                  from Debian packages and the binaries `make backends` builds
#
# Every image is named localhost/sagascope/<name>:<tag> (a short name would be normalised to
# docker.io and pulled) and kept as an OCI archive in $SAGASCOPE_CACHE/images/, named by a
# fingerprint of its inputs (Containerfile, versions, binaries, repository files copied in):
# a warm run finds every archive and only imports what containerd lacks.
# Tags are pinned in .env; deploy/k8s/overlays/dev-local names the same ones.
LOG_TAG=k8s-images
source "$(dirname "${BASH_SOURCE[0]}")/../backends/lib.sh"

IMAGES_DIR="$SAGASCOPE_CACHE/images"
BUILDAH_DIR="$SAGASCOPE_CACHE/buildah-images"        # buildah's own storage (vfs) and contexts
BUILDAH_RUNROOT="${SAGASCOPE_BUILDAH_RUNROOT:-/run/sagascope-images-buildah}"
CONTAINERD_SOCK="${SAGASCOPE_K8S_CONTAINERD:-/run/sagascope-k8s/containerd.sock}"
PREFIX=localhost/sagascope
FP_LABEL=io.sagascope.images.fingerprint

SUITE="$(_env_value K8S_IMAGES_DEBIAN_SUITE)"
POSTGRES_MAJOR="$(_env_value K8S_IMAGES_POSTGRES_MAJOR)"
PROMETHEUS_VERSION="$(_env_value K8S_IMAGES_PROMETHEUS_VERSION)"
NX27017_VERSION="$(_env_value NX27017_VERSION)"
JAEGER_VERSION="$(_env_value JAEGER_VERSION)"
# Debian's apt sources of this host: apt in the image (and in the builds on it) uses the same.
APT_SOURCES="${SAGASCOPE_APT_SOURCES:-}"
if [[ -z "$APT_SOURCES" ]]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [[ -s "$f" ]] && { APT_SOURCES="$f"; break; }
  done
fi
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,passwd"
# Slim like python:*-slim: no manuals, documentation (copyright files stay) or translations.
MMDEBSTRAP_OPTS=(--variant=apt "--include=$BASE_PACKAGES"
  "--dpkgopt=path-exclude=/usr/share/man/*" "--dpkgopt=path-exclude=/usr/share/doc/*"
  "--dpkgopt=path-include=/usr/share/doc/*/copyright" "--dpkgopt=path-exclude=/usr/share/locale/*"
  '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin')

command -v buildah >/dev/null || die "buildah not found (apt-get install -y buildah)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install -y mmdebstrap)"
[[ -n "$APT_SOURCES" ]] || die "no apt sources on this host to build the Debian base from (set SAGASCOPE_APT_SOURCES)"
mkdir -p "$IMAGES_DIR" "$BUILDAH_DIR"
exec 9>"$BUILDAH_DIR/.lock"
flock 9   # one build at a time: the storage and the contexts are shared

bh() { nice buildah --root "$BUILDAH_DIR/storage" --runroot "$BUILDAH_RUNROOT" --storage-driver vfs "$@"; }

# The network here may inspect TLS with a CA only the host trusts: lend the host's bundle (and a
# pip.conf pointing at it) to the build steps, without baking either into an image.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$BUILDAH_DIR/pip.conf"
BUD_OPTS=(--network host --pull=never --layers=false
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
  --volume "$BUILDAH_DIR/pip.conf:/etc/pip.conf:ro")

# fp TEXT [REPO_FILE...] -> 16 hex digits over a text (versions, options, binary hashes) and
# the contents of files given relative to the repository (so every clone computes the same).
fp() {
  local text="$1"; shift
  { printf '%s\n' "$text"; (( $# == 0 )) || (cd "$REPO_ROOT" && sha256sum -- "$@"); } | sha256sum | cut -c1-16
}
# repo_files PATH... -> the tracked and untracked, not ignored, files under PATHs
repo_files() { git -C "$REPO_ROOT" ls-files -co --exclude-standard -- "$@" | while read -r f; do [[ -f "$REPO_ROOT/$f" ]] && printf '%s\n' "$f"; done | sort -u; }
hash_of() { sha256sum "$1" | cut -c1-64; }

archive_of() { printf '%s/%s-%s-%s.oci.tar' "$IMAGES_DIR" "$1" "$2" "$3"; }   # NAME TAG FP

declare -a BUILT=() CACHED=() MISSING=() ARCHIVES=() REFS=()

# present NAME TAG FP: is the image with this fingerprint in buildah's storage (a base for others)?
present() {
  [[ "$(bh inspect --type image --format "{{index .OCIv1.Config.Labels \"$FP_LABEL\"}}" "$PREFIX/$1:$2" 2>/dev/null)" == "$3" ]]
}
# in_storage NAME TAG FP: make the image a build can start FROM available (from its archive).
in_storage() {
  present "$@" && return 0
  local id
  id="$(bh pull --quiet "oci-archive:$(archive_of "$@")")"
  bh tag "$id" "$PREFIX/$1:$2"
}
# publish NAME TAG FP: write the built image's archive, drop the archives it replaces.
publish() {
  local archive tmp
  archive="$(archive_of "$@")"
  tmp="$archive.tmp.$$"
  bh push --quiet "$PREFIX/$1:$2" "oci-archive:$tmp:$PREFIX/$1:$2"
  mv "$tmp" "$archive"
  find "$IMAGES_DIR" -maxdepth 1 -name "$1-$2-*.oci.tar" ! -name "${archive##*/}" -delete
}
# image NAME TAG FP BUILDER [ARGS...]: build unless its archive exists; record it either way.
image() {
  local name="$1" tag="$2" fpr="$3" builder="$4" archive start
  shift 4
  archive="$(archive_of "$name" "$tag" "$fpr")"
  if [[ -s "$archive" ]]; then
    CACHED+=("$name")
  else
    log "building $PREFIX/$name:$tag (inputs $fpr)"
    start=$SECONDS
    "$builder" "$name" "$tag" "$fpr" "$@"
    publish "$name" "$tag" "$fpr"
    BUILT+=("$name ($((SECONDS - start))s)")
  fi
  ARCHIVES+=("$archive")
  REFS+=("$PREFIX/$name:$tag")
}

# --- the Debian base ---------------------------------------------------------------------------
build_base() {  # NAME TAG FP
  local tar ctr
  tar="$(mktemp -d "$BUILDAH_DIR/.rootfs.XXXXXX")"
  mmdebstrap --quiet "${MMDEBSTRAP_OPTS[@]}" --format=tar "$SUITE" "$tar/rootfs.tar" "$APT_SOURCES"
  ctr="$(bh from scratch)"
  bh add --quiet "$ctr" "$tar/rootfs.tar" /
  rm -rf "$tar"
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --label "$FP_LABEL=$3" --label "org.opencontainers.image.description=Debian $SUITE with Python (mmdebstrap)" "$ctr"
  bh commit --quiet --rm "$ctr" "$PREFIX/$1:$2" >/dev/null
}
BASE_TAG="$SUITE"
BASE_FP="$(fp "suite=$SUITE ${MMDEBSTRAP_OPTS[*]} sources=$(hash_of "$APT_SOURCES")")"
image debian-python "$BASE_TAG" "$BASE_FP" build_base
BASE_REF="$PREFIX/debian-python:$BASE_TAG"

# bud NAME TAG FP CONTEXT CONTAINERFILE [BUD ARGS...]: a build on the base image.
bud() {
  local name="$1" tag="$2" fpr="$3" context="$4" file="$5"
  shift 5
  in_storage debian-python "$BASE_TAG" "$BASE_FP"
  mkdir -p "$BUILDAH_DIR/logs"
  if ! bh bud "${BUD_OPTS[@]}" --build-arg "BASE_IMAGE=$BASE_REF" --label "$FP_LABEL=$fpr" \
      -f "$file" -t "$PREFIX/$name:$tag" "$@" "$context" >"$BUILDAH_DIR/logs/$name.log" 2>&1; then
    tail -n 25 "$BUILDAH_DIR/logs/$name.log" >&2
    die "building $PREFIX/$name:$tag failed (whole log: $BUILDAH_DIR/logs/$name.log)"
  fi
}
# stage NAME: a fresh build context for deploy/images/NAME (plus what the caller copies in).
stage() {
  local ctx="$BUILDAH_DIR/context/$1"
  rm -rf "$ctx" && mkdir -p "$ctx" && cp -a "$REPO_ROOT/deploy/images/$1/." "$ctx/"
  printf '%s' "$ctx"
}

# --- the project's own images: the Dockerfile's targets on the base ----------------------------
mapfile -t APP_FILES < <(repo_files Dockerfile .dockerignore pyproject.toml requirements/service.lock README.md protos sagascope)
mapfile -t ELK_FILES < <(repo_files Dockerfile .dockerignore observability/elk)
build_target() { bud "$1" "$2" "$3" "$REPO_ROOT" "$REPO_ROOT/Dockerfile" --target "$1"; }
image service dev "$(fp "base=$BASE_FP" "${APP_FILES[@]}")" build_target
image elk-setup dev "$(fp "base=$BASE_FP" "${ELK_FILES[@]}")" build_target

# --- stand-ins for the third-party images -------------------------------------------------------
build_postgres() { bud "$1" "$2" "$3" "$(stage postgres)" Containerfile --build-arg "POSTGRES_MAJOR=$POSTGRES_MAJOR"; }
image postgres "$POSTGRES_MAJOR" "$(fp "base=$BASE_FP pg=$POSTGRES_MAJOR" $(repo_files deploy/images/postgres))" build_postgres

build_nx27017() { bud "$1" "$2" "$3" "$(stage nx-27017)" Containerfile --build-arg "NX27017_VERSION=$NX27017_VERSION"; }
image nx-27017 "$NX27017_VERSION" "$(fp "base=$BASE_FP nx=$NX27017_VERSION" $(repo_files deploy/images/nx-27017))" build_nx27017

build_prometheus() { bud "$1" "$2" "$3" "$(stage prometheus)" Containerfile --build-arg "PROMETHEUS_VERSION=$PROMETHEUS_VERSION"; }
image prometheus "$PROMETHEUS_VERSION" "$(fp "base=$BASE_FP prometheus=$PROMETHEUS_VERSION" $(repo_files deploy/images/prometheus))" build_prometheus

# binary_image NAME TAG BINARY WHAT: a stand-in around a binary `make backends` builds.
build_binary() {  # NAME TAG FP BINARY
  local ctx
  ctx="$(stage "$1")"
  cp "$4" "$ctx/"
  bud "$1" "$2" "$3" "$ctx" Containerfile
}
binary_image() {
  local name="$1" tag="$2" bin="$3" what="$4"
  if [[ ! -x "$bin" ]]; then
    MISSING+=("$name: $bin is not built yet ($what)")
    return 0
  fi
  image "$name" "$tag" "$(fp "base=$BASE_FP bin=$(hash_of "$bin")" $(repo_files "deploy/images/$name"))" build_binary "$bin"
}
binary_image jaeger "$JAEGER_VERSION" "$JAEGER_BIN" "bash scripts/backends/build_jaeger.sh"
binary_image otelcol "$OTELCOL_VERSION" "$OTELCOL_BIN" "bash scripts/backends/build_collector.sh"

# Elasticsearch: the unpacked integ-test zip, its modes set here (group = user, as upstream).
ES_TREE="$(cat "$SAGASCOPE_CACHE/elasticsearch.home" 2>/dev/null || printf '%s' "$ES_HOME")"
build_elasticsearch() {
  local ctx
  ctx="$(stage elasticsearch)"
  cp -a "$ES_TREE" "$ctx/elasticsearch"
  rm -f "$ctx/elasticsearch/.sagascope-installed"
  mkdir -p "$ctx/elasticsearch/data" "$ctx/elasticsearch/logs" "$ctx/elasticsearch/plugins"
  chmod -R g=u "$ctx/elasticsearch"
  chmod -R u+w,g+w "$ctx/elasticsearch/config" "$ctx/elasticsearch/data" "$ctx/elasticsearch/logs"
  bud "$1" "$2" "$3" "$ctx" Containerfile
  rm -rf "$ctx"
}
if [[ -f "$ES_TREE/.sagascope-installed" ]]; then
  image elasticsearch "$ELASTIC_VERSION" \
    "$(fp "base=$BASE_FP es=$ELASTIC_VERSION $(cd "$ES_TREE" && find . -type f ! -name .sagascope-installed -printf '%P %s\n' | sort | sha256sum)" \
      $(repo_files deploy/images/elasticsearch))" build_elasticsearch
else
  MISSING+=("elasticsearch: $ES_TREE is not installed yet (bash scripts/backends/install_elasticsearch.sh)")
fi

# --- summary and loading ------------------------------------------------------------------------
# vfs keeps a full copy per layer: drop the images a rebuild replaced (the archives are the cache).
(( ${#BUILT[@]} == 0 )) || bh rmi --prune >/dev/null 2>&1 || true
log "built: ${BUILT[*]:-none}; cached: ${CACHED[*]:-none} (${SECONDS}s so far)"
for a in "${ARCHIVES[@]}"; do
  log "  $(du -h "$a" | cut -f1)	${a##*/}"
done

# The current set, "REF ARCHIVE" a line, for whatever loads or checks them (tests/deploy/images.py).
for i in "${!ARCHIVES[@]}"; do printf '%s %s\n' "${REFS[$i]}" "${ARCHIVES[$i]}"; done > "$IMAGES_DIR/sagascope-images.txt"

# The archive's manifest digest, to skip an import containerd already has.
manifest_digest() { tar -xOf "$1" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])'; }
if [[ -S "$CONTAINERD_SOCK" ]]; then
  ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
  for i in "${!ARCHIVES[@]}"; do
    a="${ARCHIVES[$i]}" ref="${REFS[$i]}"
    if ctr_ images ls -q "name==$ref" 2>/dev/null | grep -qx "$ref" \
       && [[ "$(ctr_ images ls "name==$ref" | awk 'NR==2 {print $3}')" == "$(manifest_digest "$a")" ]]; then
      continue
    fi
    log "importing $ref into containerd ($CONTAINERD_SOCK)"
    ctr_ images import "$a" >/dev/null
  done
  log "containerd (k8s.io) has: $(ctr_ images ls -q | grep "^$PREFIX/" | tr '\n' ' ')"
else
  log "no containerd at $CONTAINERD_SOCK (make k8s-up starts one): archives built, nothing imported"
fi

if (( ${#MISSING[@]} )); then
  for m in "${MISSING[@]}"; do log "NOT BUILT $m"; done
  die "${#MISSING[@]} image(s) could not be built yet (above); run make backends, then this again"
fi
log "all images ready in ${SECONDS}s"
