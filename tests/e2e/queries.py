"""Every query the project ships, so the e2e tier can run them against real backends.

- :func:`dashboard_queries` — each PromQL ``expr`` in ``dashboards/*.json`` (panel targets
  and query variables' definitions stay out: they are Grafana functions, not PromQL)
- :func:`sql_panels` — the panels on a SQL datasource (the saga log on PostgreSQL), which no
  e2e backend can run: there is no Grafana or PostgreSQL in the e2e stack
- :func:`rule_queries` — each ``expr`` in ``observability/prometheus/*rules*.yml``
- :func:`saved_searches` — each Kibana saved search in ``observability/elk/kibana/*.ndjson``
  with its index pattern, columns, sort and KQL query, and :func:`kql_to_es` to turn
  that query into Elasticsearch query DSL.
- :func:`render_promql` — replaces Grafana's variables with values Prometheus accepts.

Standard library plus PyYAML-free parsing of the rule files (they are read with
``yaml`` when importable, else with a small ``expr:`` scanner), so it imports
anywhere the tests do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "dashboards"
RULES_GLOB = "observability/prometheus/*rules*.yml"
KIBANA_DIR = REPO / "observability" / "elk" / "kibana"


@dataclass(frozen=True)
class PromQuery:
    source: str  # "dashboards/saga-overview.json" or the rule file
    name: str  # panel title / alert or record name
    expr: str
    ref: str = ""  # panel refId ("A", ...) or "alert" / "record"

    @property
    def id(self) -> str:
        return f"{self.source}::{self.name}::{self.ref}"


@dataclass(frozen=True)
class SavedSearch:
    id: str
    title: str
    index_pattern: str
    time_field: str
    query: str
    language: str
    columns: tuple[str, ...]
    sort: tuple[tuple[str, str], ...]


# --- PromQL -------------------------------------------------------------------

GRAFANA_DEFAULTS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}


def render_promql(expr: str, variables: dict[str, str] | None = None) -> str:
    """Substitute ``$var`` / ``${var}`` / ``[[var]]``: Grafana built-ins get fixed
    windows, dashboard variables their "All" value ``.*`` unless given."""
    values = {**GRAFANA_DEFAULTS, **(variables or {})}

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", sub, expr)


def dashboard_queries(directory: Path = DASHBOARD_DIR) -> list[PromQuery]:
    found: list[PromQuery] = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    found.append(
                        PromQuery(f"dashboards/{path.name}", panel.get("title", "?"), expr, target.get("refId", ""))
                    )
    return found


SQL_DATASOURCES = {"grafana-postgresql-datasource", "postgres"}


def sql_panels(directory: Path = DASHBOARD_DIR) -> list[tuple[str, str]]:
    """(dashboard file, panel title) of every panel whose targets run on a SQL datasource."""
    found = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in _panels(board.get("panels", [])):
            sources = [t.get("datasource") or panel.get("datasource") or {} for t in panel.get("targets", [])]
            types = {source.get("type") for source in sources}
            if types & SQL_DATASOURCES:
                found.append((f"dashboards/{path.name}", str(panel.get("title", "?"))))
    return found


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for panel in panels:
        flat.append(panel)
        flat.extend(_panels(panel.get("panels", [])))  # collapsed rows hold panels
    return flat


def rule_queries(repo: Path = REPO) -> list[PromQuery]:
    found: list[PromQuery] = []
    for path in sorted(repo.glob(RULES_GLOB)):
        rel = str(path.relative_to(repo))
        for group in _load_rule_groups(path):
            for rule in group.get("rules", []):
                kind = "alert" if "alert" in rule else "record"
                found.append(PromQuery(rel, rule[kind], str(rule["expr"]).strip(), kind))
    return found


def _load_rule_groups(path: Path) -> list[dict[str, Any]]:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - fallback for a bare interpreter
        return _scan_rules(path.read_text())
    return list(yaml.safe_load(path.read_text()).get("groups", []))


def _scan_rules(text: str) -> list[dict[str, Any]]:
    """Tiny reader for our own rule files: `- alert|record: NAME` then `expr: |` block or inline."""
    rules: list[dict[str, Any]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"\s*-\s*(alert|record):\s*(\S+)", lines[i])
        if m:
            rule = {m.group(1): m.group(2)}
            j = i + 1
            while j < len(lines) and not re.match(r"\s*expr:", lines[j]):
                j += 1
            em = re.match(r"(\s*)expr:\s*(.*)", lines[j])
            assert em, f"no expr for {rule}"
            if em.group(2).strip() in ("|", ">", "|-", ">-"):
                indent = len(em.group(1))
                body = []
                j += 1
                while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                    body.append(lines[j].strip())
                    j += 1
                rule["expr"] = "\n".join(b for b in body if b)
            else:
                rule["expr"] = em.group(2).strip()
            rules.append(rule)
            i = j
        else:
            i += 1
    return [{"rules": rules}]


def all_prom_queries() -> list[PromQuery]:
    return dashboard_queries() + rule_queries()


# --- Kibana saved searches ----------------------------------------------------


def saved_searches(directory: Path = KIBANA_DIR) -> list[SavedSearch]:
    objects = [
        json.loads(line)
        for path in sorted(directory.glob("*.ndjson"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    views = {o["id"]: o["attributes"] for o in objects if o["type"] == "index-pattern"}
    found: list[SavedSearch] = []
    for o in (o for o in objects if o["type"] == "search"):
        attrs = o["attributes"]
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        ref_name = source.get("indexRefName")
        view_id = next(r["id"] for r in o["references"] if r["name"] == ref_name)
        view = views[view_id]
        found.append(
            SavedSearch(
                id=o["id"],
                title=attrs["title"],
                index_pattern=view["title"],
                time_field=view.get("timeFieldName", "@timestamp"),
                query=source["query"]["query"],
                language=source["query"]["language"],
                columns=tuple(attrs.get("columns", [])),
                sort=tuple((s[0], s[1]) for s in attrs.get("sort", [])),
            )
        )
    return found


_KQL_CLAUSE = re.compile(r'^\s*([\w.@]+)\s*:\s*(\*|"[^"]*"|[^\s()"]+)\s*$')


def kql_to_es(query: str) -> dict[str, Any]:
    """Translate the KQL subset our saved searches use — clauses ``field : value``,
    ``field : "value"``, ``field : *`` joined by ``and`` — into ES query DSL.
    Anything else raises ValueError, so a richer saved query fails loudly here
    rather than being half-translated."""
    if not query.strip():
        return {"match_all": {}}
    clauses = re.split(r"\s+and\s+", query.strip(), flags=re.IGNORECASE)
    filters: list[dict[str, Any]] = []
    for clause in clauses:
        m = _KQL_CLAUSE.match(clause)
        if not m:
            raise ValueError(f"KQL clause outside the supported subset: {clause!r}")
        field, value = m.group(1), m.group(2)
        if value == "*":
            filters.append({"exists": {"field": field}})
        else:
            filters.append({"match_phrase": {field: value.strip('"')}})
    return {"bool": {"filter": filters}}


def saved_search_request(search: SavedSearch, extra_kql: str = "", size: int = 500) -> dict[str, Any]:
    """The body Discover would send for `search`, optionally narrowed by more KQL
    (e.g. ``attributes.correlation_id : "abc"``)."""
    query = kql_to_es(search.query)
    if extra_kql:
        query["bool"]["filter"].extend(kql_to_es(extra_kql)["bool"]["filter"])
    return {
        "query": query,
        "sort": [{field: {"order": order}} for field, order in search.sort] or [{search.time_field: {"order": "desc"}}],
        "_source": True,
        "size": size,
    }
