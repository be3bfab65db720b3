"""Install sagascope's Elasticsearch templates and Kibana saved objects.

Run by the compose `elk-setup` one-shot job and by `make stack`
(sagascope.local.backends). Idempotent: every object carries a fingerprint of
its source file (Elasticsearch `_meta.sagascope_sha256`) or is compared with
what Kibana holds, and is only written when it differs — a second run prints
"unchanged" for everything and changes nothing.

Environment:
  ELASTICSEARCH_URL  required, e.g. http://elasticsearch:9200 (not with --keep-kibana-current)
  KIBANA_URL         optional; empty skips the saved-objects import (local stack)
  SETUP_TIMEOUT      seconds to wait for each backend (default 180)

``--keep-kibana-current SECONDS`` imports only the Kibana saved objects and then checks them again
every SECONDS, for ever: a container beside Kibana (Kubernetes dev overlay) keeps them current
whenever Kibana runs, so the one-shot Job needs no Kibana — and finishes where Kibana is not
deployed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from elasticsearch import ApiError, Elasticsearch

HERE = Path(__file__).resolve().parent
ES_DIR = HERE / "elasticsearch"
KIBANA_OBJECTS = HERE / "kibana" / "saved-objects.ndjson"

INDEX_TEMPLATE = "sagascope-logs"
LIFECYCLE_COMPONENT = "sagascope-logs@lifecycle"
ILM_POLICY = "sagascope-logs"


@dataclass(frozen=True)
class Settings:
    elasticsearch_url: str
    kibana_url: str
    timeout: float

    @classmethod
    def from_env(cls, need_elasticsearch: bool = True) -> Settings:
        es = os.environ.get("ELASTICSEARCH_URL", "").strip()
        if need_elasticsearch and not es:
            raise SystemExit("ELASTICSEARCH_URL is required (e.g. http://elasticsearch:9200)")
        return cls(
            elasticsearch_url=es,
            kibana_url=os.environ.get("KIBANA_URL", "").strip().rstrip("/"),
            timeout=float(os.environ.get("SETUP_TIMEOUT", "180")),
        )


def say(message: str) -> None:
    print(f"[elk-setup] {message}", flush=True)


def load_with_fingerprint(path: Path) -> tuple[dict[str, Any], str]:
    raw = path.read_bytes()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()[:16]


def wait_for_elasticsearch(es: Elasticsearch, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            es.cluster.health(wait_for_status="yellow", timeout="5s")
            return
        except Exception as exc:  # connection refused while it boots
            if time.monotonic() > deadline:
                raise SystemExit(f"Elasticsearch not healthy after {timeout:.0f}s: {exc}") from exc
            time.sleep(2)


def ilm_available(es: Elasticsearch) -> bool:
    # The integ-test distribution used by `make stack` has no x-pack-ilm module.
    try:
        es.ilm.get_status()
        return True
    except ApiError as exc:
        if exc.meta.status in (400, 404, 405):
            return False
        raise


def _write_unless_current(digest: str, stored_meta: Callable[[], dict[str, Any]], write: Callable[[], Any]) -> str:
    """``write()`` unless the stored object's ``_meta`` carries this file's fingerprint (404 = absent)."""
    try:
        if stored_meta().get("sagascope_sha256") == digest:
            return "unchanged"
    except ApiError as exc:
        if exc.meta.status != 404:
            raise
    write()
    return "written"


def ensure_ilm_policy(es: Elasticsearch) -> str:
    body, digest = load_with_fingerprint(ES_DIR / "ilm-policy.json")
    policy = body["policy"]
    policy["_meta"]["sagascope_sha256"] = digest
    return _write_unless_current(
        digest,
        lambda: es.ilm.get_lifecycle(name=ILM_POLICY)[ILM_POLICY]["policy"].get("_meta", {}),
        lambda: es.ilm.put_lifecycle(name=ILM_POLICY, policy=policy),
    )


def _first_meta(found: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return found[0][key].get("_meta", {}) if found else {}


def ensure_component_template(es: Elasticsearch) -> str:
    body, digest = load_with_fingerprint(ES_DIR / "lifecycle-component-template.json")
    body["_meta"]["sagascope_sha256"] = digest
    return _write_unless_current(
        digest,
        lambda: _first_meta(
            es.cluster.get_component_template(name=LIFECYCLE_COMPONENT)["component_templates"], "component_template"
        ),
        lambda: es.cluster.put_component_template(
            name=LIFECYCLE_COMPONENT, template=body["template"], meta=body["_meta"]
        ),
    )


def ensure_index_template(es: Elasticsearch) -> str:
    body, digest = load_with_fingerprint(ES_DIR / "index-template.json")
    body["_meta"]["sagascope_sha256"] = digest
    return _write_unless_current(
        digest,
        lambda: _first_meta(es.indices.get_index_template(name=INDEX_TEMPLATE)["index_templates"], "index_template"),
        lambda: es.indices.put_index_template(name=INDEX_TEMPLATE, **body),
    )


def read_saved_objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in KIBANA_OBJECTS.read_text().splitlines() if line.strip()]


def _contains(stored: Any, wanted: Any) -> bool:
    """True when every key/value in `wanted` is also in `stored` (Kibana adds fields)."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in wanted.items())
    return stored == wanted


def wait_for_kibana(http: urllib3.PoolManager, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = http.request("GET", f"{url}/api/status", timeout=5.0)
            if resp.status == 200 and json.loads(resp.data)["status"]["overall"]["level"] == "available":
                return
        except Exception:  # connection refused while it boots
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"Kibana not available after {timeout:.0f}s at {url}")
        time.sleep(3)


def ensure_saved_objects(http: urllib3.PoolManager, url: str) -> str:
    objects = read_saved_objects()
    headers = {"kbn-xsrf": "sagascope-elk-setup", "content-type": "application/json"}
    wanted = [{"type": o["type"], "id": o["id"]} for o in objects]
    resp = http.request("POST", f"{url}/api/saved_objects/_bulk_get", body=json.dumps(wanted), headers=headers)
    if resp.status != 200:
        raise SystemExit(f"Kibana _bulk_get answered {resp.status}: {resp.data[:500]!r}")
    stored = {(o["type"], o["id"]): o for o in json.loads(resp.data)["saved_objects"] if "error" not in o}
    stale = [
        o
        for o in objects
        if (o["type"], o["id"]) not in stored
        or not _contains(stored[(o["type"], o["id"])].get("attributes"), o["attributes"])
    ]
    if not stale:
        return f"unchanged ({len(objects)} objects)"
    ndjson = "\n".join(json.dumps(o) for o in objects) + "\n"
    resp = http.request(
        "POST",
        f"{url}/api/saved_objects/_import?overwrite=true",
        fields={"file": ("sagascope.ndjson", ndjson.encode(), "application/ndjson")},
        headers={"kbn-xsrf": "sagascope-elk-setup"},
    )
    result = json.loads(resp.data) if resp.data else {}
    if resp.status != 200 or not result.get("success"):
        raise SystemExit(f"Kibana import failed ({resp.status}): {json.dumps(result)[:1000]}")
    return f"imported {result.get('successCount')} objects ({', '.join(o['id'] for o in stale)} differed)"


def keep_kibana_current(settings: Settings, every_s: float) -> None:
    """Import the saved objects once Kibana is up, then re-check them every ``every_s`` (a Kibana
    whose index was lost gets them back). Never returns; a failed round is retried next time."""
    if not settings.kibana_url:
        raise SystemExit("KIBANA_URL is required with --keep-kibana-current")
    http = urllib3.PoolManager()
    while True:
        try:
            wait_for_kibana(http, settings.kibana_url, settings.timeout)
            say(f"Kibana saved objects: {ensure_saved_objects(http, settings.kibana_url)}")
        except SystemExit as failed:  # Kibana restarting or refusing: say so, try again later
            say(f"Kibana saved objects not checked: {failed}")
        time.sleep(every_s)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--keep-kibana-current"]:
        if len(args) != 2:
            raise SystemExit("usage: setup.py --keep-kibana-current SECONDS")
        keep_kibana_current(Settings.from_env(need_elasticsearch=False), float(args[1]))
    elif args:
        raise SystemExit(f"unknown arguments {args}; usage: setup.py [--keep-kibana-current SECONDS]")
    settings = Settings.from_env()
    es = Elasticsearch(settings.elasticsearch_url, request_timeout=30)
    wait_for_elasticsearch(es, settings.timeout)

    if ilm_available(es):
        say(f"ILM policy {ILM_POLICY}: {ensure_ilm_policy(es)}")
        say(f"component template {LIFECYCLE_COMPONENT}: {ensure_component_template(es)}")
    else:
        say("ILM API not available in this Elasticsearch distribution; logs are kept without a lifecycle policy")
    say(f"index template {INDEX_TEMPLATE}: {ensure_index_template(es)}")

    if settings.kibana_url:
        http = urllib3.PoolManager()
        wait_for_kibana(http, settings.kibana_url, settings.timeout)
        say(f"Kibana saved objects: {ensure_saved_objects(http, settings.kibana_url)}")
    else:
        say("KIBANA_URL empty: Kibana saved objects not imported")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
