"""The ``loras`` table: LoRA adapters registered per owner (Generate's ``loras``).

Revision ID: 0004_loras
Revises: 0003_distributed_workers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_loras"
down_revision = "0003_distributed_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    seconds = sa.Float().with_variant(sa.dialects.sqlite.REAL(), "sqlite")
    op.create_table(
        "loras",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("hub_id", sa.Text),
        sa.Column("hub_filename", sa.Text),
        sa.Column("rank", sa.Integer),
        sa.Column("size_bytes", sa.Integer),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("created_at", seconds, nullable=False),
        sa.UniqueConstraint("owner", "name"),
    )


def downgrade() -> None:
    op.drop_table("loras")
