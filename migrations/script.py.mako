"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Expand only (migrations/README.md): the release before keeps running while this applies. DDL on
an existing table through outbox_worker.migration_scripts.locked(...); nothing slow after it here
(the lock is held until the commit): scans and validations go in after_commit(connection).
Grants to outbox_producer / outbox_worker / outbox_operator; a downgrade.
Compatibility marker (revision 0010): INSERT this revision's id into outbox.compatible_code (the
downgrade deletes it). An expand revision deletes no row there, so the release before keeps
starting on it; a contract revision deletes the rows of every code revision it breaks (their pods
then refuse to start: "deploy the version that ran migrate") and its downgrade restores them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
