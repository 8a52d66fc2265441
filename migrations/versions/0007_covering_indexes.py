"""covering indexes for the funnel, per-source and filtered image queries (index-only, id-ordered at 100k+ rows)

Revision ID: 0007_covering_indexes
Revises: 0006_job_units
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_covering_indexes"
down_revision: str | None = "0006_job_units"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index("ix_items_job_status_reason", ["job_id", "status", "reason"], unique=False)
        batch_op.create_index("ix_items_source_status_reason", ["source_id", "status", "reason"], unique=False)
        batch_op.drop_index("ix_items_job_status")
        batch_op.drop_index("ix_items_source_status")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_source_id_id", ["source_id", "id"], unique=False)
        batch_op.create_index("ix_images_status_reason_id", ["status", "drop_reason", "id"], unique=False)
        batch_op.drop_index("ix_images_source_id")
        batch_op.drop_index("ix_images_status_reason")


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_source_id", ["source_id"], unique=False)
        batch_op.create_index("ix_images_status_reason", ["status", "drop_reason"], unique=False)
        batch_op.drop_index("ix_images_source_id_id")
        batch_op.drop_index("ix_images_status_reason_id")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index("ix_items_source_status", ["source_id", "status"], unique=False)
        batch_op.create_index("ix_items_job_status", ["job_id", "status"], unique=False)
        batch_op.drop_index("ix_items_source_status_reason")
        batch_op.drop_index("ix_items_job_status_reason")
