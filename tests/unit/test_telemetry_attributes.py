"""plain(): the SDK's attribute maps as dicts for the exporters' loops, contents unchanged."""

from __future__ import annotations

from types import MappingProxyType

from opentelemetry.attributes import BoundedAttributes

from sagascope.common.telemetry.attributes import plain


def test_bounded_attributes_become_an_equal_plain_dict() -> None:
    bounded = BoundedAttributes(attributes={"db.system": "postgresql", "net.peer.port": 5432, "ok": True})
    result = plain(bounded)
    assert type(result) is dict
    assert result == {"db.system": "postgresql", "net.peer.port": 5432, "ok": True}
    assert list(result) == list(bounded)  # the order the attributes were set in is kept


def test_a_dict_is_used_as_it_is_and_other_mappings_keep_their_contents() -> None:
    attributes = {"a": "1"}
    assert plain(attributes) is attributes
    assert plain(MappingProxyType({"b": "2"})) == {"b": "2"}
