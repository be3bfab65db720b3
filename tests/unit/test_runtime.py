"""The garbage collector's settings for a long-running service."""

from __future__ import annotations

import gc

import pytest

from sagascope.common.config import ConfigError
from sagascope.common.runtime import GC_THRESHOLD, gc_threshold, tune_garbage_collector


def test_the_default_threshold_collects_the_young_generation_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GC_THRESHOLD, raising=False)
    assert gc_threshold() == (10000, 20, 20)
    monkeypatch.setenv(GC_THRESHOLD, "700,10,10")
    assert gc_threshold() == (700, 10, 10)


@pytest.mark.parametrize("raw", ["10000", "a,b,c", "0,10,10", "1,2,3,4"])
def test_a_malformed_threshold_is_refused_with_its_value(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(GC_THRESHOLD, raw)
    with pytest.raises(ConfigError, match=f"{GC_THRESHOLD}.*{raw!r}"):
        gc_threshold()


def test_tuning_freezes_the_start_up_heap_and_sets_the_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GC_THRESHOLD, "5000,15,15")
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == (5000, 15, 15)
        assert gc.get_freeze_count() > 10000  # the test process's modules, at least
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
