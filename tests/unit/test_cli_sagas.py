"""The `sagascope sagas` helpers a person meets first: ages, the filter sent, and the links."""

from __future__ import annotations

import argparse

import pytest

from sagascope.api.admin.v1 import admin_pb2
from sagascope.cli.main import build_parser
from sagascope.cli.sagas import _get_request, build_filter, links, parse_age


def test_ages_parse_and_bad_ones_say_what_is_expected() -> None:
    assert [parse_age(t) for t in ("30s", "5m", "1.5h", "2d")] == [30, 300, 5400, 172800]
    with pytest.raises(argparse.ArgumentTypeError, match="not an age like 30s, 5m, 2h or 1d"):
        parse_age("5 minutes")


def test_the_list_command_sends_the_filter_it_was_given() -> None:
    args = build_parser().parse_args(
        ["sagas", "list", "--status", "failed", "--step", "charge", "--older-than", "5m", "--stalest"]
    )
    sent = build_filter(args)
    assert (sent.status, sent.step, sent.older_than.seconds) == (admin_pb2.SAGA_STATUS_FAILED, "charge", 300)
    assert args.user == "operator" and args.stalest
    with pytest.raises(SystemExit):  # resolve without a note is refused before any call
        build_parser().parse_args(["sagas", "resolve", "saga_1"])


def test_show_picks_the_key_by_its_shape() -> None:
    assert _get_request("saga_ab").WhichOneof("ref") == "saga_id"
    assert _get_request("ord_ab").WhichOneof("ref") == "order_id"
    assert _get_request("4515f56cca474036").WhichOneof("ref") == "correlation_id"


def test_links_use_the_configured_base_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    saga = admin_pb2.Saga(trace_id="ab" * 16, summary=admin_pb2.SagaSummary(correlation_id="cid-1"))
    monkeypatch.setenv("JAEGER_URL", "https://jaeger.example/")
    monkeypatch.setenv("KIBANA_URL", "https://kibana.example")
    trace, logs = links(saga)
    assert trace == f"trace   https://jaeger.example/trace/{'ab' * 16}"
    assert logs.startswith("logs    https://kibana.example/app/discover#/") and "cid-1" in logs
    monkeypatch.delenv("JAEGER_URL")
    assert links(saga)[0] == f"trace   http://127.0.0.1:16686/trace/{'ab' * 16}"
