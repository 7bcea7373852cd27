"""Alembic environment for the webhooks migrations (run by ``ckan db``)."""

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
# No logging set-up here: CKAN has configured it, and fileConfig would disable
# every logger that already exists.

# CKAN keeps one version table per plugin: webhooks_alembic_version.
VERSION_TABLE = f"{os.path.basename(os.path.dirname(__file__))}_alembic_version"


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
