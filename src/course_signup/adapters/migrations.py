"""Alembic, driven from code: the packaged migrations, the head revision, upgrade."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from course_signup.adapters import database
from course_signup.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = settings.sqlalchemy_url
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def upgrade(settings: Settings) -> None:
    """Bring the database to the newest schema (runs its own event loop: call it outside one)."""
    if settings.embedded:
        database.secure_embedded_database(settings)
    command.upgrade(alembic_config(settings), "head")
