"""Settings: environment, settings file, defaults, validation, the generated secret."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import pytest

from photoremix.settings import Settings, SettingsError, get_settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "DATABASE_URL",
        "PHOTOREMIX_DATABASE_URL",
        "PHOTOREMIX_SETTINGS_FILE",
        "PHOTOREMIX_DATA_DIR",
        "PHOTOREMIX_STARTING_CREDIT",
        "PHOTOREMIX_PRICE_PER_OUTPUT",
        "PHOTOREMIX_PRICE_PER_RECOGNISED_OUTPUT",
        "PHOTOREMIX_SIGNING_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the default data_dir is relative to the working directory
    get_settings.cache_clear()


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.data_dir == Path("photoremix-data")
    assert settings.database_url == f"sqlite:///{tmp_path / 'photoremix-data' / 'photoremix.db'}"
    assert settings.starting_credit == Decimal("10.00")
    assert settings.price_per_output == Decimal("0.12")
    assert settings.price_per_recognised_output == Decimal("0.15")
    assert settings.signing_secret is None


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHOTOREMIX_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PHOTOREMIX_STARTING_CREDIT", "2.5")
    monkeypatch.setenv("PHOTOREMIX_SIGNING_SECRET", "s" * 32)
    settings = load_settings()
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'photoremix.db'}"
    assert settings.starting_credit == Decimal("2.50")
    assert settings.signing_secret_bytes() == b"s" * 32
    assert "s" * 32 not in repr(settings)  # secrets are not printed


def test_database_url_from_plain_or_prefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/plain")
    assert load_settings().database_url == "postgresql://db/plain"
    monkeypatch.setenv("PHOTOREMIX_DATABASE_URL", "postgresql://db/prefixed")
    assert load_settings().database_url == "postgresql://db/prefixed"


def test_settings_file_with_environment_taking_priority(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings_file = tmp_path / "photoremix.env"
    settings_file.write_text(
        "PHOTOREMIX_PRICE_PER_OUTPUT=0.10\nPHOTOREMIX_STARTING_CREDIT=1.00\n", encoding="utf-8"
    )
    monkeypatch.setenv("PHOTOREMIX_SETTINGS_FILE", str(settings_file))
    monkeypatch.setenv("PHOTOREMIX_STARTING_CREDIT", "7.00")
    settings = get_settings()
    assert settings.price_per_output == Decimal("0.10")
    assert settings.starting_credit == Decimal("7.00")
    assert get_settings() is settings  # cached


def test_missing_settings_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOREMIX_SETTINGS_FILE", "/nonexistent/photoremix.env")
    with pytest.raises(SettingsError, match="PHOTOREMIX_SETTINGS_FILE"):
        load_settings()


@pytest.mark.parametrize("value", ["abc", "-1.00", "0.123", "nan"])
def test_invalid_money_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PHOTOREMIX_PRICE_PER_OUTPUT", value)
    with pytest.raises(SettingsError, match="PHOTOREMIX_PRICE_PER_OUTPUT"):
        load_settings()


def test_recognised_price_below_plain_price_is_refused() -> None:
    with pytest.raises(ValueError, match="price_per_recognised_output"):
        Settings(price_per_output="0.20", price_per_recognised_output="0.15")


def test_generated_signing_secret_is_persisted_privately(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    secret = settings.signing_secret_bytes()
    assert len(secret) == 32
    path = tmp_path / "data" / "signing-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path / "data").signing_secret_bytes() == secret  # reused
    assert Settings(data_dir=tmp_path / "other").signing_secret_bytes() != secret


def test_corrupt_signing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "signing-secret").write_text("not hex", encoding="ascii")
    with pytest.raises(SettingsError, match="delete it"):
        Settings(data_dir=tmp_path).signing_secret_bytes()
