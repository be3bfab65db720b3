#!/usr/bin/env bash
# Install Elasticsearch for `make stack` from Maven Central's integ-test zip
# (org.elasticsearch.distribution.integ-test-zip:elasticsearch), and the
# dedicated non-root user that runs it (Elasticsearch refuses to run as root).
#
# Cached: the zip in ~/.m2 (fetched once with mvn), the unpacked tree in the
# service user's home (/var/lib/sagascope-es by default — the root user's
# ~/.cache is not readable by another user). A second run only checks stamps.
#
# The integ-test zip is the minimal distribution: no bundled JDK and, of the
# x-pack modules, only core and security. There is no ILM and no Kibana here;
# scripts/backends/elk_setup.py says so and skips what needs them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GAV="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ELASTIC_VERSION}:zip"
M2_REPO="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}"
ZIP="$M2_REPO/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ELASTIC_VERSION/elasticsearch-$ELASTIC_VERSION.zip"
ES_BASE="${SAGASCOPE_ES_BASE:-/var/lib/$ES_USER}"
ES_INSTALL="$ES_BASE/elasticsearch-$ELASTIC_VERSION"

if [[ "$(id -u)" -ne 0 ]]; then
  # Without root we cannot create the service user; run as ourselves instead.
  ES_BASE="$SAGASCOPE_CACHE"
  ES_INSTALL="$ES_HOME"
fi

# 1. the service user
if [[ "$(id -u)" -eq 0 ]] && ! id "$ES_USER" >/dev/null 2>&1; then
  log "creating system user $ES_USER (home $ES_BASE)"
  useradd --system --home-dir "$ES_BASE" --create-home --shell /usr/sbin/nologin "$ES_USER"
fi

# 2. the zip, through Maven's own cache
if [[ ! -s "$ZIP" ]]; then
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  log "fetching $GAV with mvn"
  mvn -q -B dependency:get -Dartifact="$GAV" -Dtransitive=false
fi
[[ -s "$ZIP" ]] || die "mvn did not leave $ZIP"

# 3. unpack once per version
STAMP="$ES_INSTALL/.sagascope-installed"
if [[ ! -f "$STAMP" ]]; then
  log "unpacking Elasticsearch $ELASTIC_VERSION into $ES_INSTALL"
  tmp="$(mktemp -d "$ES_BASE/.unpack.XXXXXX")"
  unzip -q "$ZIP" -d "$tmp"
  rm -rf "$ES_INSTALL"
  mv "$tmp/elasticsearch-$ELASTIC_VERSION" "$ES_INSTALL"
  rmdir "$tmp"
  # read-only for the service user: config, data and logs live elsewhere
  chmod -R a+rX "$ES_INSTALL"
  touch "$STAMP"
fi

JAVA_HOME_FOR_ES="$(es_java_home)"
printf '%s\n' "$ES_INSTALL" > "$SAGASCOPE_CACHE/elasticsearch.home" 2>/dev/null || {
  mkdir -p "$SAGASCOPE_CACHE"; printf '%s\n' "$ES_INSTALL" > "$SAGASCOPE_CACHE/elasticsearch.home"; }
log "elasticsearch $ELASTIC_VERSION ready: $ES_INSTALL (java: $JAVA_HOME_FOR_ES, user: $ES_USER)"
