"""review: backend projects, answers, annotators, webhook inbox

Revision ID: 0005_review
Revises: 0003_releases
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_review"
down_revision: str | None = "0003_releases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.String(length=40), nullable=True),
        sa.Column("last_sync_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_projects")),
        sa.UniqueConstraint("backend", "kind", "taxonomy_version", name="uq_review_projects_identity"),
    )
    op.create_table(
        "review_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("annotator", sa.String(length=128), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("lead_time", sa.Float(), nullable=True),
        sa.Column("answered_at", TS, nullable=False),
        sa.Column("revision", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_correct", sa.Integer(), nullable=False),
        sa.Column("gold_total", sa.Integer(), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["review_projects.id"],
            name=op.f("fk_review_answers_project_id_review_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["review_tasks.id"], name=op.f("fk_review_answers_task_id_review_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_answers")),
        sa.UniqueConstraint("project_id", "external_id", name="uq_review_answers_external"),
    )
    op.create_index(op.f("ix_review_answers_task_id"), "review_answers", ["task_id"], unique=False)
    op.create_index("ix_review_answers_annotator_status", "review_answers", ["annotator", "status"], unique=False)
    op.create_table(
        "review_annotators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("flag_reason", sa.Text(), nullable=True),
        sa.Column("flagged_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_annotators")),
        sa.UniqueConstraint("name", name=op.f("uq_review_annotators_name")),
    )
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
    )
    op.create_index("ix_review_events_pending", "review_events", ["processed_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_review_events_pending", table_name="review_events")
    op.drop_table("review_events")
    op.drop_table("review_annotators")
    op.drop_index("ix_review_answers_annotator_status", table_name="review_answers")
    op.drop_index(op.f("ix_review_answers_task_id"), table_name="review_answers")
    op.drop_table("review_answers")
    op.drop_table("review_projects")
