"""``photoremix serve``: run the HTTP service with the embedded defaults.

On first start (an empty database) it creates an account with the starting credit and
one API key, keeps that key in ``<data_dir>/first-api-key`` (mode 0600) so later starts
can print it again, and writes ``<data_dir>/example-request.json`` (two small generated
images) so the printed curl command works as-is.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
from pathlib import Path
from typing import Final

import click
import numpy as np
from sqlalchemy import func, select

from photoremix.imaging import encode_image
from photoremix.persistence import make_engine, make_session_factory, migrate
from photoremix.persistence.models import Account
from photoremix.services.accounts import AccountError, authenticate, create_account
from photoremix.settings import Settings, SettingsError, load_settings

FIRST_KEY_FILE: Final = "first-api-key"
EXAMPLE_REQUEST_FILE: Final = "example-request.json"


@click.command(name="serve")
@click.option("--host", default=None, help="Address to bind [default: PHOTOREMIX_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: PHOTOREMIX_PORT, 8000].")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the database and outputs [default: PHOTOREMIX_DATA_DIR, ./photoremix-data].",
)
def serve_command(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start the Phota-compatible remix service (SQLite, local files, classic engine)."""
    import uvicorn

    from photoremix.api import create_app
    from photoremix.observability import configure_logging

    overrides = {
        name: value
        for name, value in (("host", host), ("port", port), ("data_dir", data_dir))
        if value is not None
    }
    if overrides:
        # Options win over the environment: set them where every part reads settings.
        for name, value in overrides.items():
            os.environ[f"PHOTOREMIX_{name.upper()}"] = str(value)
    try:
        settings = load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None

    key = ensure_first_key(settings)
    example = write_example_request(settings.data_dir.expanduser())
    _print_welcome(settings, key, example)
    configure_logging()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler it
    # found installed; exiting 0 there tells service managers the stop was clean.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # configure_logging() already routes uvicorn's logs
        timeout_graceful_shutdown=30,
    )


def ensure_first_key(settings: Settings) -> str | None:
    """The first account's key: created on an empty database, else read back if still valid.

    Returns None when the database has accounts but the kept key is gone or revoked (the
    operator manages keys with ``photoremix keys``).
    """
    assert settings.database_url is not None
    key_path = settings.data_dir.expanduser() / FIRST_KEY_FILE
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        with make_session_factory(engine).begin() as session:
            if session.scalar(select(func.count()).select_from(Account)) == 0:
                _, key = create_account(session, "default", settings.starting_credit)
                _write_private(key_path, key + "\n")
                return key
            if not key_path.is_file():
                return None
            key = key_path.read_text(encoding="ascii").strip()
            try:
                authenticate(session, key)
            except AccountError:
                return None
            return key
    finally:
        engine.dispose()


def write_example_request(data_dir: Path) -> Path:
    """A ready-to-send remix request with two generated 512 px images (urls mode)."""
    path = data_dir / EXAMPLE_REQUEST_FILE
    if path.is_file():
        return path
    y, x = np.mgrid[0:384, 0:512].astype(np.float32)
    # Content: a cool, evenly lit scene with a bright disc; reference: warm, contrasty.
    content = np.stack([90 + 60 * x / 512, 120 + 50 * y / 384, 170 - 40 * x / 512], axis=-1)
    disc = (x - 300) ** 2 + (y - 180) ** 2 < 90**2
    content[disc] = (230, 220, 200)
    reference = np.stack([200 + 50 * y / 384, 120 + 60 * x / 512, 40 + 30 * y / 384], axis=-1)
    body = {
        "input_image": _b64(content),
        "reference_image": _b64(reference),
        "num_output_images": 1,
        "output_format": "jpg",
        "response_mode": "urls",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body), encoding="ascii")
    return path


def _b64(image: np.ndarray) -> str:
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return base64.b64encode(encode_image(pixels, "jpg")).decode("ascii")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)


def _print_welcome(settings: Settings, key: str | None, example: Path) -> None:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    shown_key = key or "<your key: photoremix keys create>"
    click.echo(f"photoremix: serving on {base}  (data in {settings.data_dir})")
    if key is not None:
        click.echo(f"API key: {key}")
    else:
        click.echo(
            "No first key to show (revoked or removed); create one with `photoremix keys create`."
        )
    click.echo(
        "Try it (returns a signed download URL):\n"
        f"  curl -s {base}/v1/phota/remix -H 'X-API-Key: {shown_key}' "
        f"-H 'Content-Type: application/json' --data-binary @{example}\n"
        "With your own photos:\n"
        '  printf \'{"input_image":"%s","reference_image":"%s","response_mode":"urls"}\' '
        '"$(base64 -w0 photo.jpg)" "$(base64 -w0 style.jpg)" | '
        f"curl -s {base}/v1/phota/remix -H 'X-API-Key: {shown_key}' "
        "-H 'Content-Type: application/json' --data-binary @-\n"
        f"API reference: {base}/v1/phota/docs"
    )
