"""The ``trainyard`` command.

Administrative commands that work on the configured database
(``TRAINYARD_DATABASE_URL``, see ``service.config``):

    trainyard db upgrade                      # bring the schema to the code's revision
    trainyard db current                      # the revision the database is at
    trainyard token create --scope write [--name N]
    trainyard token list
    trainyard token revoke TOKEN_ID

Every command but ``db upgrade`` refuses a database whose schema is behind,
naming the command that fixes it.  Training offline needs no database:
``python -m trainer SPEC.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .config import ConfigError, Settings
from .storage import migrate, repo
from .storage.db import make_engine, make_sessionmaker
from .storage.models import TOKEN_SCOPES


@click.group(help=__doc__.split("\n\n")[0])
@click.pass_context
def main(ctx: click.Context) -> None:
    try:
        ctx.obj = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _engine(settings: Settings, *, check: bool = True) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    try:
        if check:
            try:
                migrate.check_schema(engine)
            except migrate.SchemaError as exc:
                raise click.ClickException(str(exc)) from exc
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    with _engine(settings) as engine, make_sessionmaker(engine)() as session, session.begin():
        yield session


# ----------------------------------------------------------------------------- db
@main.group(help="The database schema.")
def db() -> None:
    pass


@db.command(help="Apply every migration the database lacks (creates a SQLite file if needed).")
@click.pass_obj
def upgrade(settings: Settings) -> None:
    migrate.upgrade(settings.database_url)
    with _engine(settings, check=False) as engine:
        click.echo(f"database at revision {migrate.current_revision(engine)} (head {migrate.head_revision()})")


@db.command(help="Print the revision the database is at, and the code's.")
@click.pass_obj
def current(settings: Settings) -> None:
    with _engine(settings, check=False) as engine:
        click.echo(f"database: {migrate.current_revision(engine) or '(empty)'}; code: {migrate.head_revision()}")


# -------------------------------------------------------------------------- token
@main.group(help="API tokens: every /api call needs one unless TRAINYARD_AUTH=off.")
def token() -> None:
    pass


@token.command("create", help="Make a token; it is printed once and stored only as a hash.")
@click.option("--scope", type=click.Choice(TOKEN_SCOPES), required=True,
              help="read: look; write: also submit, change and cancel runs; admin: everything.")
@click.option("--name", default=None, help="A label to recognise the token by in `token list`.")
@click.pass_obj
def token_create(settings: Settings, scope: str, name: str | None) -> None:
    with _transaction(settings) as session:
        plaintext, row = repo.create_token(session=session, scope=scope, name=name)
        token_id = row.id
    click.echo(plaintext)
    click.echo(f"token {token_id} ({scope}) created; keep it now, it cannot be shown again", err=True)


@token.command("list", help="The tokens, without their secrets.")
@click.pass_obj
def token_list(settings: Settings) -> None:
    with _transaction(settings) as session:
        rows = [
            (t.id, t.name or "", t.scope, _when(t.created_at), _when(t.last_used_at),
             "revoked " + _when(t.revoked_at) if t.revoked_at else "active")
            for t in repo.list_tokens(session=session)
        ]
    _table(("id", "name", "scope", "created", "last used", "state"), rows)


@token.command("revoke", help="Revoke a token by its id (from `token list`).")
@click.argument("token_id")
@click.pass_obj
def token_revoke(settings: Settings, token_id: str) -> None:
    with _transaction(settings) as session:
        if not repo.revoke_token(session=session, token_id=token_id):
            raise click.ClickException(f"no token with id {token_id}")
    click.echo(f"token {token_id} revoked")


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
