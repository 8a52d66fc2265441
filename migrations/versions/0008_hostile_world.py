"""confined sources and reclaimable jobs: sources.root, sources.claimed_by, jobs.heartbeat_at

Existing folder sources get their own folder as root (what they read before); existing URL lists get the
list's folder as root, and read local entries no more unless re-registered with the ``local`` option.

Revision ID: 0008_hostile_world
Revises: 0007_covering_indexes
"""

import posixpath
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_hostile_world"
down_revision: str | None = "0007_covering_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("root", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_sources_claimed_by_jobs"), "jobs", ["claimed_by"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    sources = sa.table(
        "sources",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("uri", sa.Text),
        sa.column("root", sa.Text),
    )
    conn = op.get_bind()
    for source_id, kind, uri in conn.execute(sa.select(sources.c.id, sources.c.kind, sources.c.uri)).all():
        path = uri.removeprefix("file://")
        if kind in ("folder", "url_list") and path.startswith("/"):
            root = path if kind == "folder" else posixpath.dirname(path)
            conn.execute(sa.update(sources).where(sources.c.id == source_id).values(root=root))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sources_claimed_by_jobs"), type_="foreignkey")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("root")
