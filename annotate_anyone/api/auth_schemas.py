"""Request and response bodies of the auth, key, user and audit endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RoleName = Literal["admin", "engineer", "annotator", "trainer"]


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, examples=["nightly-trainer"])
    role: RoleName = Field(examples=["trainer"])
    expires_in_days: float | None = Field(default=None, gt=0, le=3650, examples=[90])


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str = Field(examples=["3f9a0c1d"])
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, never stored", examples=["aa_3f9a0c1d_Xy..."])


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=128, examples=["ada"])
    password: str = Field(min_length=8, max_length=256, examples=["correct horse battery"])
    role: RoleName = Field(examples=["engineer"])


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None


class WhoAmI(BaseModel):
    kind: Literal["key", "user"]
    name: str
    role: str
    permissions: list[str] = Field(examples=[["pool:read", "releases:read"]])


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str = Field(examples=["user:ada"])
    role: str | None
    action: str = Field(examples=["job.start"])
    target_type: str = Field(examples=["job"])
    target_id: str = Field(examples=["42"])
    detail: dict[str, Any]
    remote_addr: str | None


class TakedownIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, examples=["subject asked to be removed"])
