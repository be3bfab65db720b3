"""observability/elk/setup.py's two modes: the one-shot (Elasticsearch, then Kibana if given) and
the Kibana keeper beside Kibana (--keep-kibana-current), which needs no Elasticsearch URL."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SETUP = Path(__file__).resolve().parents[2] / "observability" / "elk" / "setup.py"


def load_setup() -> ModuleType:
    # The client lives in the ELK tool venv, not the dev one; these modes never reach it.
    if "elasticsearch" not in sys.modules and importlib.util.find_spec("elasticsearch") is None:
        client = ModuleType("elasticsearch")
        client.ApiError = type("ApiError", (Exception,), {})  # type: ignore[attr-defined]
        client.Elasticsearch = object  # type: ignore[attr-defined]
        sys.modules["elasticsearch"] = client
    spec = importlib.util.spec_from_file_location("elk_setup", SETUP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["elk_setup"] = module
    spec.loader.exec_module(module)
    return module


def test_keeper_needs_kibana_but_not_elasticsearch(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = load_setup()
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    monkeypatch.delenv("KIBANA_URL", raising=False)
    with pytest.raises(SystemExit, match="KIBANA_URL is required"):
        setup.main(["--keep-kibana-current", "60"])
    with pytest.raises(SystemExit, match="ELASTICSEARCH_URL is required"):
        setup.main([])


def test_keeper_retries_a_kibana_that_is_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = load_setup()
    monkeypatch.setenv("KIBANA_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("SETUP_TIMEOUT", "0")
    said: list[str] = []
    monkeypatch.setattr(setup, "say", said.append)
    rounds = iter(range(2))

    def sleep(seconds: float) -> None:
        if next(rounds, None) is None:
            raise KeyboardInterrupt  # end the endless loop after two rounds

    monkeypatch.setattr(setup.time, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        setup.main(["--keep-kibana-current", "1"])
    assert sum("not checked" in line for line in said) >= 2, said


def test_unknown_arguments_are_refused() -> None:
    with pytest.raises(SystemExit, match="unknown arguments"):
        load_setup().main(["--oops"])
