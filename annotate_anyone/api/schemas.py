"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from annotate_anyone.jobs.kinds import STARTABLE


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        examples=[["query", "limit"]], description="Where: body, query, path or header, then the field"
    )
    msg: str = Field(examples=["Input should be less than or equal to 500"])
    type: str = Field(examples=["less_than_equal"])


class ErrorBody(BaseModel):
    error: str = Field(examples=["not_found"])
    detail: str = Field(examples=["no job 42"])
    fields: list[FieldError] | None = Field(
        None, description="Validation errors (422 `invalid_request`) only: one entry per offending field"
    )


T = TypeVar("T")


class Page(BaseModel, Generic[T]):  # noqa: UP046 (Python 3.11 has no PEP 695)
    """A page of a list; the next page is ``after_id=next_after_id`` (keyset) or ``offset + limit`` while
    ``has_more``."""

    items: list[T]
    total: int | None = Field(
        description="How many match the filters, exact up to 1,000 (beyond, 1,001); null where counting would "
        "cost a scan"
    )
    limit: int
    offset: int
    has_more: bool = Field(description="Whether rows follow this page")
    next_after_id: int | None = Field(
        None, description="Pass as `after_id` for the next page (keyset paging); null on the last page"
    )


class SourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["demo"])
    kind: Literal["folder", "url_list", "s3_prefix"] = Field(examples=["folder"])
    uri: str = Field(min_length=1, max_length=4096, examples=["/data/photos"])
    options: dict[str, Any] = Field(default_factory=dict, examples=[{"glob": "**/*.jpg"}])
    allow_private: bool = False


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    kind: str
    uri: str
    options: dict[str, Any]
    allow_private: bool
    root: str | None = Field(default=None, description="The folder this source's local reads stay in")
    taken_down: bool
    created_at: datetime
    last_scan_at: datetime | None


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    sha256: str
    phash: str | None
    source_id: int | None
    source_uri: str
    width: int
    height: int
    format: str | None
    status: str
    drop_reason: str | None
    duplicate_of: int | None
    metrics: dict[str, Any]
    created_at: datetime


class AttributeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    group: int
    key: str
    value: str | None
    confidence: float | None
    origin: str
    model_version: str
    state: str
    annotator: str


class PersonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    index: int
    box: list[float]
    score: float
    keypoints: list[Any] | None
    shot_type: str | None
    mask_key: str | None
    parsing_key: str | None
    caption: str | None
    attributes: list[AttributeOut] = []


class ImageDetail(ImageOut):
    persons: list[PersonOut] = []


class ImageListItem(ImageOut):
    person_count: int = Field(examples=[1])
    shot_types: list[str] = Field(examples=[["full_body"]])
    persons: list[PersonOut] | None = Field(
        None, description="Persons with keypoints and attributes; only with `expand=persons`"
    )


class JobIn(BaseModel):
    kind: Literal[STARTABLE] = Field(examples=["ingest"])  # the kinds the table marks startable
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"source_ids": [1]}])


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    params: dict[str, Any]
    status: str
    total: int
    done: int
    failed: int
    progress: float
    counters: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ReleaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    version: str
    parent_version: str | None
    manifest_key: str
    digest: str | None
    counts: dict[str, Any]
    created_at: datetime
