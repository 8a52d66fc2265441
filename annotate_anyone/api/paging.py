"""One page shape for every list of the API: offset or keyset (``after_id``) paging, a bounded total."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import Select

from annotate_anyone.api.params import MAX_ID

TOTAL_CAP = 1_000  # totals are exact up to here (beyond, they read 1,001): a full count of a big table costs a scan

AfterId = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="Keyset paging: the rows after this id in the list's order (pass the previous page's "
        "`next_after_id`); stable while rows are added, unlike `offset`",
    ),
]


def page(
    session: Session,
    query: Select,
    id_column: InstrumentedAttribute,
    *,
    limit: int,
    offset: int = 0,
    after_id: int | None = None,
    newest_first: bool = True,
) -> dict[str, Any]:
    """A page of ``query`` (rows of one model) ordered by ``id_column``, as the :class:`~api.schemas.Page` shape.

    ``total`` counts what the filters match (not only what follows ``after_id``), exactly up to
    :data:`TOTAL_CAP`; ``has_more`` and ``next_after_id`` come from reading one row past the page."""
    order = id_column.desc() if newest_first else id_column.asc()
    bounded = query.with_only_columns(id_column).order_by(order).limit(TOTAL_CAP + 1).subquery()
    total = session.scalar(select(func.count()).select_from(bounded)) or 0
    if after_id is not None:
        query = query.where(id_column < after_id if newest_first else id_column > after_id)
    rows = list(session.scalars(query.order_by(order).offset(offset).limit(limit + 1)))
    has_more, rows = len(rows) > limit, rows[:limit]
    return {
        "items": rows,
        "total": total,
        "limit": limit,
        "offset": offset,
        "has_more": has_more,
        "next_after_id": rows[-1].id if has_more else None,
    }
