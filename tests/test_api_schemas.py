"""The Python layer: the API schemas reject what the contract rejects, naming the field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from models import Task, TaskCreate, TaskRead, TaskUpdate
from models.task import WHITESPACE

MULTIBYTE = ["é", "€", "😀"]  # 2, 3 and 4 bytes in UTF-8: lengths count characters


def field_of(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {str(err["loc"][0]) for err in exc.value.errors()}


@pytest.mark.parametrize("title", ["", " ", "   ", "\t\n", "\u3000\u00a0"])
def test_blank_title_rejected(title: str) -> None:
    """TaskCreate rejects an empty or whitespace-only title."""
    with pytest.raises(ValidationError) as exc:
        TaskCreate(title=title)
    assert field_of(exc) == {"title"}


@pytest.mark.parametrize("char", ["a", *MULTIBYTE])
def test_title_length_counts_characters(char: str) -> None:
    """A title of 200 characters passes and 201 fails, also with multi-byte characters."""
    assert TaskCreate(title=char * 200).title == char * 200
    with pytest.raises(ValidationError) as exc:
        TaskCreate(title=char * 201)
    assert field_of(exc) == {"title"}


@pytest.mark.parametrize("char", ["a", *MULTIBYTE])
def test_description_length_counts_characters(char: str) -> None:
    """A description of 1000 characters passes and 1001 fails; it is optional."""
    assert TaskCreate(title="t").description is None
    assert TaskCreate(title="t", description=char * 1000).description == char * 1000
    with pytest.raises(ValidationError) as exc:
        TaskCreate(title="t", description=char * 1001)
    assert field_of(exc) == {"description"}


@pytest.mark.parametrize("field", ["title", "description"])
def test_nul_character_is_a_validation_error(field: str) -> None:
    """A NUL character is a validation error naming the field, never a driver crash."""
    data = {"title": "ok", field: "a\x00b"}
    with pytest.raises(ValidationError) as exc:
        TaskCreate.model_validate(data)
    assert field_of(exc) == {field}


def test_user_id_rules_on_the_table_model() -> None:
    """Task.model_validate rejects a missing, blank, too long or NUL user_id."""
    for bad in ["", "  ", "\u2003", "u" * 256, "a\x00"]:
        with pytest.raises(ValidationError) as exc:
            Task.model_validate({"user_id": bad, "title": "t"})
        assert field_of(exc) == {"user_id"}
    with pytest.raises(ValidationError) as exc:
        Task.model_validate({"title": "t"})
    assert field_of(exc) == {"user_id"}
    assert Task.model_validate({"user_id": "u" * 255, "title": "t"}).complete is False


def test_every_python_whitespace_character_counts_as_blank() -> None:
    """The whitespace set shared with the CHECK constraints is exactly str.isspace()."""
    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == WHITESPACE
    for char in WHITESPACE:
        with pytest.raises(ValidationError):
            TaskCreate(title=char * 3)
        assert TaskCreate(title=f"{char}x{char}").title == f"{char}x{char}"


def test_create_has_no_owner_and_update_is_partial() -> None:
    """TaskCreate ignores user_id; TaskUpdate fields are optional but title/complete not null."""
    assert "user_id" not in TaskCreate.model_fields
    assert TaskUpdate().model_dump(exclude_unset=True) == {}
    assert TaskUpdate(complete=True).model_dump(exclude_unset=True) == {"complete": True}
    assert TaskUpdate(description=None).model_dump(exclude_unset=True) == {"description": None}
    for field in ("title", "complete"):
        with pytest.raises(ValidationError) as exc:
            TaskUpdate.model_validate({field: None})
        assert field_of(exc) == {field}
    with pytest.raises(ValidationError) as exc:
        TaskUpdate(title=" ")
    assert field_of(exc) == {"title"}


def test_read_has_every_field_and_iso_timestamps() -> None:
    """TaskRead carries the v1.1 contract fields and serializes timestamps as ISO 8601 UTC."""
    assert set(TaskRead.model_fields) == {
        "id",
        "user_id",
        "title",
        "description",
        "complete",
        "priority",
        "due_date",
        "recurring",
        "recurring_end_date",
        "tags",
        "created_at",
        "updated_at",
    }
    read = TaskRead.model_validate(
        {
            "id": 1,
            "user_id": "u",
            "title": "t",
            "complete": False,
            "created_at": "2026-01-02T03:04:05+00:00",
            "updated_at": "2026-01-02T03:04:05+00:00",
        }
    )
    assert json.loads(read.model_dump_json())["created_at"] == "2026-01-02T03:04:05Z"
