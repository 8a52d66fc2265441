"""annotation engine: model predictions, features, model versions, calibrations, gold set, rounds

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _person_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["person_id"], ["persons.id"], name=op.f(f"fk_{table}_person_id_persons"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "model_predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("group", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("distribution", sa.JSON(), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _person_fk("model_predictions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_predictions")),
        sa.UniqueConstraint("person_id", "group", "key", "model_version", name="uq_model_predictions_identity"),
    )
    op.create_index(op.f("ix_model_predictions_person_id"), "model_predictions", ["person_id"])
    op.create_index(op.f("ix_model_predictions_model_version"), "model_predictions", ["model_version"])
    op.create_table(
        "person_features",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("extractor", sa.String(length=128), nullable=False),
        sa.Column("vector", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _person_fk("person_features"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_features")),
        sa.UniqueConstraint("person_id", "extractor", name="uq_person_features_identity"),
    )
    op.create_index(op.f("ix_person_features_person_id"), "person_features", ["person_id"])
    op.create_table(
        "label_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_models")),
        sa.UniqueConstraint("version", name=op.f("uq_label_models_version")),
    )
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("group", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("ece_before", sa.Float(), nullable=False),
        sa.Column("ece", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
        sa.UniqueConstraint("model_version", "group", "key", name="uq_calibrations_identity"),
    )
    op.create_index(op.f("ix_calibrations_model_version"), "calibrations", ["model_version"])
    op.create_table(
        "gold_persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        _person_fk("gold_persons"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_persons")),
        sa.UniqueConstraint("person_id", name=op.f("uq_gold_persons_person_id")),
    )
    op.create_table(
        "flywheel_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flywheel_rounds")),
        sa.UniqueConstraint("number", name=op.f("uq_flywheel_rounds_number")),
    )


def downgrade() -> None:
    for table in ("flywheel_rounds", "gold_persons", "calibrations", "label_models", "person_features"):
        op.drop_table(table)
    op.drop_table("model_predictions")
