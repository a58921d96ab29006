import json
from pathlib import Path
from typing import ClassVar
from uuid import uuid4

import pytest
from pydantic import BaseModel, Field

from radcommon.contracts import EVENTS, REGISTRY, Event, StudyReceivedV1, UnknownEventType, parse_event
from radcommon.contracts.catalogue import breaking_changes, check_catalogue, event_schema, write_catalogue

REPOSITORY = Path(__file__).resolve().parents[4]


def test_the_committed_catalogue_matches_the_models_and_breaks_no_published_version() -> None:
    assert check_catalogue(REPOSITORY / "contracts") == []


def test_every_event_has_a_versioned_routing_key_and_an_envelope() -> None:
    for model in EVENTS:
        producer, _aggregate, *_, version = model.routing_key.split(".")
        assert version.startswith("v") and version[1:].isdigit(), model
        assert model.event_type == model.routing_key.removeprefix(producer + ".")
        assert {"event_id", "occurred_at", "organization_id", "trace_parent"} <= set(model.model_fields)
        assert REGISTRY[model.routing_key] is model


def test_a_routing_key_without_a_version_is_refused() -> None:
    with pytest.raises(ValueError, match="routing key"):
        class _Unversioned(Event):
            routing_key: ClassVar[str] = "worklist.item.created"
            aggregate: ClassVar[str] = "event_id"


def test_events_round_trip_through_their_routing_key() -> None:
    event = StudyReceivedV1(organization_id=uuid4(), study_instance_uid="1.2.3", number_of_series=1,
                            number_of_instances=2, modalities=["CT"])
    assert parse_event(event.routing_key, event.model_dump_json()) == event
    with pytest.raises(UnknownEventType):
        parse_event("nobody.nothing.happened.v1", event.model_dump_json())


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    event = StudyReceivedV1(organization_id=uuid4(), study_instance_uid="1.2.3", number_of_series=1,
                            number_of_instances=1)
    newer = {**json.loads(event.model_dump_json()), "a_field_added_later": 42}
    assert parse_event(event.routing_key, json.dumps(newer)) == event


def _schema_of(fields: dict[str, object]) -> dict[str, object]:
    model = type("Probe", (BaseModel,), {"__annotations__": {k: v[0] for k, v in fields.items()},  # type: ignore[index]
                                          **{k: v[1] for k, v in fields.items()}})  # type: ignore[index]
    return model.model_json_schema()


def test_breaking_changes_are_named() -> None:
    published = _schema_of({"a": (str, Field(max_length=16)), "b": (int, ...), "c": (str, "")})
    assert breaking_changes(published, published) == []
    optional_added = _schema_of({"a": (str, Field(max_length=16)), "b": (int, ...), "c": (str, ""), "d": (str, "")})
    assert breaking_changes(published, optional_added) == []
    removed = _schema_of({"a": (str, Field(max_length=16)), "c": (str, "")})
    assert breaking_changes(published, removed) == ["field 'b' was removed"]
    retyped = _schema_of({"a": (str, Field(max_length=16)), "b": (str, ...), "c": (str, "")})
    assert breaking_changes(published, retyped) == ["field 'b' changed type or constraints"]
    narrowed = _schema_of({"a": (str, Field(max_length=8)), "b": (int, ...), "c": (str, "")})
    assert breaking_changes(published, narrowed) == ["field 'a' changed type or constraints"]
    required = _schema_of({"a": (str, Field(max_length=16)), "b": (int, ...), "c": (str, ""), "d": (str, ...)})
    assert breaking_changes(published, required) == ["field 'd' became required"]


def test_the_check_reports_drift_and_a_breaking_change_against_the_frozen_version(tmp_path: Path) -> None:
    write_catalogue(tmp_path)
    assert check_catalogue(tmp_path) == []
    key = StudyReceivedV1.routing_key
    frozen = event_schema(StudyReceivedV1)
    frozen["properties"]["retired_field"] = {"type": "string"}
    (tmp_path / "published" / f"{key}.json").write_text(json.dumps(frozen))
    (tmp_path / "events" / f"{key}.json").write_text("{}")
    problems = check_catalogue(tmp_path)
    assert f"events/{key}.json: differs from the model (run `telerad contracts write`)" in problems
    assert f"{key}: field 'retired_field' was removed" in problems
    write_catalogue(tmp_path)  # regenerating never rewrites what was published
    assert f"{key}: field 'retired_field' was removed" in check_catalogue(tmp_path)
