"""Sampling: the user's sampler (``OTEL_TRACES_SAMPLER``), minus the pool-checkout spans.

SQLAlchemy's instrumentation opens a CLIENT span named ``connect`` for every
connection checkout from the pool — four per saga, each with no statement and
~0 ms. They say nothing an operator uses and cost as much to record and export
as a real span, so they are dropped here; every SQL statement is still a span.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, _get_from_env_or_default
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

POOL_CHECKOUT_SPAN = "connect"


class DropPoolCheckouts(Sampler):
    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: object = None,
    ) -> SamplingResult:
        if name == POOL_CHECKOUT_SPAN and kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state  # type: ignore[arg-type]
        )

    def get_description(self) -> str:
        return f"DropPoolCheckouts{{{self._delegate.get_description()}}}"


def configured_sampler() -> Sampler:
    """``OTEL_TRACES_SAMPLER`` / ``_ARG`` as the SDK reads them, wrapped."""
    return DropPoolCheckouts(_get_from_env_or_default())
