"""An index for the Library: one owner's tasks, newest first (``studio.jobs.library``).

Revision ID: 0005_library_index
Revises: 0004_loras
"""

from __future__ import annotations

from alembic import op

revision = "0005_library_index"
down_revision = "0004_loras"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("tasks_owner_seq", "tasks", ["owner", "seq"])


def downgrade() -> None:
    op.drop_index("tasks_owner_seq", table_name="tasks")
