"""Shared fixtures: public-domain faces for tests, and the real-photo folder (optional)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS_ENV = "PHOTOREMIX_PHOTOS_DIR"
_skipped_real_photo_tests: list[str] = []


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """Eileen Collins (NASA, public domain): (512, 512, 3) uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """Grace Hopper (US Navy, public domain), shipped with matplotlib: (600, 512, 3) uint8."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture
def database(tmp_path: Path):  # -> sqlalchemy Engine
    """A migrated SQLite database in a fresh folder, disposed after the test."""
    from photoremix.persistence import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'photoremix.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    """../shared/data/photos, from $PHOTOREMIX_PHOTOS_DIR; the test is skipped without it."""
    value = os.environ.get(PHOTOS_ENV)
    if not value or not (Path(value) / "cases.json").is_file():
        pytest.skip(f"real photos not available: set {PHOTOS_ENV} to ../shared/data/photos")
    return Path(value)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "real photos not available" in str(report.longrepr):
        _skipped_real_photo_tests.append(report.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    # Say it loudly: a skipped real-photo test is not a pass.
    if _skipped_real_photo_tests:
        terminalreporter.section("REAL-PHOTO TESTS NOT RUN", sep="!", red=True, bold=True)
        for nodeid in _skipped_real_photo_tests:
            terminalreporter.write_line(f"SKIPPED (no {PHOTOS_ENV}): {nodeid}", red=True)
