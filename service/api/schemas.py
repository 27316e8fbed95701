"""What the runs API reads: the body of ``PATCH /api/runs/<id>``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trainyard.trainer.spec import MAX_NAME_LENGTH, MAX_NOTES_LENGTH, MAX_TAG_LENGTH, MAX_TAGS

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)]], Field(max_length=MAX_TAGS)]
Notes = Annotated[str, Field(max_length=MAX_NOTES_LENGTH)]


class RunPatch(BaseModel):
    """The body of ``PATCH /api/runs/<id>``: any of ``name``, ``tags``, ``notes``, with the spec's limits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name | None = None
    tags: Tags | None = None
    notes: Notes | None = None

    @field_validator("name", "tags", "notes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (leave the field out to keep it)")
        return value
