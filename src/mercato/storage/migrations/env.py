"""Alembic environment: runs on the connection handed over by ``mercato.storage.db``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mercato.storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command line: ``-x url=sqlite:///...``
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    context.run_migrations()
