"""``photoremix keys``: create, list, revoke, add-credit, balance; human errors."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from photoremix.commands.keys import keys_group
from photoremix.persistence import make_engine
from photoremix.services.accounts import RevokedKey, authenticate
from photoremix.settings import get_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DATABASE_URL", "PHOTOREMIX_DATABASE_URL", "PHOTOREMIX_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PHOTOREMIX_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def _run(*args: str) -> Result:
    return CliRunner().invoke(keys_group, list(args), catch_exceptions=False)


def _created(result: Result) -> tuple[str, str]:
    assert result.exit_code == 0, result.output
    account_id = re.search(r"account: (\S+)", result.output)
    key = re.search(r"api key: (\S+)", result.output)
    assert account_id and key
    return account_id.group(1), key.group(1)


def test_create_list_revoke_then_authentication_fails(data_dir: Path) -> None:
    account_id, key = _created(_run("create", "--name", "Ada", "--credit", "2.50"))
    assert "balance: 2.50" in _run("balance", account_id).output

    listing = _run("list")
    assert listing.exit_code == 0
    assert key[:8] in listing.output and account_id in listing.output
    assert key not in listing.output  # never the key itself

    revoked = _run("revoke", "--", key[:8])  # "--": a key may start with "-"
    assert revoked.exit_code == 0, revoked.output
    engine = make_engine(f"sqlite:///{data_dir / 'photoremix.db'}")
    try:
        with Session(engine) as session, pytest.raises(RevokedKey):
            authenticate(session, key)
    finally:
        engine.dispose()


def test_create_defaults_to_starting_credit_from_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOREMIX_STARTING_CREDIT", "3.25")
    get_settings.cache_clear()
    account_id, _ = _created(_run("create"))
    assert "balance: 3.25" in _run("balance", account_id).output


def test_add_credit_updates_balance_and_ledger(data_dir: Path) -> None:
    account_id, _ = _created(_run("create", "--credit", "1.00"))
    result = _run("add-credit", account_id, "0.15")
    assert result.exit_code == 0, result.output
    assert "balance: 1.15" in result.output
    shown = _run("balance", account_id).output
    kinds = [line.split()[2] for line in shown.splitlines()[1:]]
    assert kinds == ["credit", "credit"]
    assert Decimal(re.search(r"balance: (\S+)", shown).group(1)) == Decimal("1.15")


@pytest.mark.parametrize("amount", ["-5", "abc", "0", "0.001", "nan"])
def test_bad_amounts_fail_with_a_message(data_dir: Path, amount: str) -> None:
    account_id, _ = _created(_run("create", "--credit", "1.00"))
    result = (
        _run("add-credit", account_id, "--", amount)
        if amount.startswith("-")
        else _run("add-credit", account_id, amount)
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "amount" in result.output.lower() or "cent" in result.output.lower()
    assert "balance: 1.00" in _run("balance", account_id).output


def test_unknown_account_and_key_fail_with_a_message(data_dir: Path) -> None:
    for args in (("add-credit", "no-such-account", "1.00"), ("revoke", "zzzzzzzz")):
        result = _run(*args)
        assert result.exit_code == 1
        assert result.output.startswith("Error: ")
