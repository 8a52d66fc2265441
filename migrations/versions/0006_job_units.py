"""job units: finished units of unit-based jobs (idempotent re-delivery, progress)

Revision ID: 0006_job_units
Revises: 0005_review
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_job_units"
down_revision: str | None = "0005_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("unit_key", sa.String(length=64), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_units_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_units")),
        sa.UniqueConstraint("job_id", "unit_key", name="uq_job_units_job_key"),
    )
    with op.batch_alter_table("job_units", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_units_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_units_job_id"))
    op.drop_table("job_units")
