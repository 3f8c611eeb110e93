"""Alembic environment: the connection is handed in by registry.storage.migrate."""

from __future__ import annotations

from alembic import context
from numbind.registry.storage.migrate import include_name
from numbind.registry.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through registry.storage.migrate
    raise RuntimeError("run migrations with `numbind admin migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
