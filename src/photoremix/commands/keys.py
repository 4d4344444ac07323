"""``photoremix keys``: manage accounts, API keys and prepaid credit.

Reads the shared settings (``PHOTOREMIX_*``, ``DATABASE_URL``) and migrates the database
before every command. Failures print one line and exit with status 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from photoremix.persistence import DatabaseError, make_engine, make_session_factory, migrate
from photoremix.services.accounts import (
    AccountError,
    InvalidAmount,
    add_credit,
    create_account,
    get_account,
    list_keys,
    parse_money,
    revoke_key,
)
from photoremix.services.billing import recent_ledger
from photoremix.settings import SettingsError, get_settings


class MoneyParam(click.ParamType):
    """Dollars with at most two decimals, e.g. ``10`` or ``0.15``; zero only if allowed."""

    name = "amount"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            return parse_money(str(value), allow_zero=self.allow_zero)
        except InvalidAmount as error:
            self.fail(str(error), param, ctx)


@contextmanager
def _session() -> Iterator[Session]:
    """A migrated database session committed on success; errors become one-line messages."""
    try:
        settings = get_settings()
        assert settings.database_url is not None  # filled in by Settings
        engine = make_engine(settings.database_url)
    except (SettingsError, DatabaseError) as error:
        raise click.ClickException(str(error)) from None
    try:
        migrate(engine)
        with make_session_factory(engine)() as session, session.begin():
            yield session
    except AccountError as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        raise click.ClickException(f"database error: {error.__class__.__name__}: {error}") from None
    finally:
        engine.dispose()


@click.group(name="keys")
def keys_group() -> None:
    """Manage accounts, API keys and prepaid credit."""


@keys_group.command("create")
@click.option("--name", default="default", show_default=True, help="Account name.")
@click.option(
    "--credit",
    type=MoneyParam(allow_zero=True),
    default=None,
    help="Starting credit in dollars [default: PHOTOREMIX_STARTING_CREDIT, 10.00].",
)
def create_command(name: str, credit: Decimal | None) -> None:
    """Create an account with one API key; the key is printed once and never again."""
    with _session() as session:
        starting = credit if credit is not None else get_settings().starting_credit
        account, key = create_account(session, name, starting)
        click.echo(f"account: {account.id}")
        click.echo(f"balance: {account.balance}")
        click.echo(f"api key: {key}")
    click.echo("Store the key now: only its hash is kept, it cannot be shown again.", err=True)


@keys_group.command("list")
def list_command() -> None:
    """List keys: prefix, account, created, revoked (never the key itself)."""
    with _session() as session:
        keys = list_keys(session)
    if not keys:
        click.echo("no keys")
        return
    click.echo(f"{'PREFIX':<10} {'ACCOUNT':<36} {'NAME':<20} {'CREATED':<20} REVOKED")
    for info in keys:
        revoked = f"{info.revoked_at:%Y-%m-%d %H:%M:%S}" if info.revoked_at else "-"
        click.echo(
            f"{info.prefix:<10} {info.account_id:<36} {info.account_name[:20]:<20} "
            f"{info.created_at:%Y-%m-%d %H:%M:%S}  {revoked}"
        )


@keys_group.command("revoke")
@click.argument("key_or_prefix")
def revoke_command(key_or_prefix: str) -> None:
    """Revoke a key given its id, its prefix, or the key itself (write `--` before a key
    that starts with `-`, e.g. `photoremix keys revoke -- -Xy12ab`)."""
    with _session() as session:
        api_key = revoke_key(session, key_or_prefix)
        click.echo(f"revoked {api_key.prefix}... (account {api_key.account_id})")


@keys_group.command("add-credit")
@click.argument("account_id")
@click.argument("amount", type=MoneyParam())
def add_credit_command(account_id: str, amount: Decimal) -> None:
    """Add AMOUNT dollars of prepaid credit to ACCOUNT_ID."""
    with _session() as session:
        balance = add_credit(session, account_id, amount, note="added by operator")
        click.echo(f"balance: {balance}")


@keys_group.command("balance")
@click.argument("account_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def balance_command(account_id: str, limit: int) -> None:
    """Show the balance of ACCOUNT_ID and its newest ledger rows."""
    with _session() as session:
        account = get_account(session, account_id)
        click.echo(f"balance: {account.balance}")
        for row in recent_ledger(session, account_id, limit):
            click.echo(
                f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.kind:<7} {row.amount:>10} "
                f"{row.balance_after:>10}  {row.reference or '-'}  {row.note}"
            )
