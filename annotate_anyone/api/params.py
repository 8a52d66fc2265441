"""Shared, bounded query and path parameters (bounds keep every value inside what the database accepts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER primary keys

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, examples=[1])]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")]
SourceIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
