"""One typed settings object shared by every command (``serve``, ``keys``, ...).

Values come, highest priority first, from:

1. environment variables prefixed ``PHOTOREMIX_`` (e.g. ``PHOTOREMIX_DATA_DIR``); the
   database URL is also read from the conventional ``DATABASE_URL``;
2. an optional ``.env``-style file named by ``PHOTOREMIX_SETTINGS_FILE`` (lines such as
   ``PHOTOREMIX_STARTING_CREDIT=5.00``);
3. the defaults documented on each field below.

Money is ``Decimal`` with at most two decimal places, never ``float``.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Final

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SETTINGS_FILE_ENV: Final = "PHOTOREMIX_SETTINGS_FILE"
SIGNING_SECRET_FILE: Final = "signing-secret"
DATABASE_FILE: Final = "photoremix.db"
_GENERATED_SECRET_BYTES: Final = 32

# Non-negative amounts in whole cents: what the ledger can store exactly.
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)]


class SettingsError(Exception):
    """The settings cannot be loaded; the message names the variable or file to fix."""


class Settings(BaseSettings):
    """Operator settings. Each field is set by the environment variable ``PHOTOREMIX_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="PHOTOREMIX_",
        env_file=None,  # chosen per load from $PHOTOREMIX_SETTINGS_FILE, see load_settings()
        env_file_encoding="utf-8",
        extra="ignore",  # other PHOTOREMIX_* variables belong to other parts of the service
        frozen=True,
        populate_by_name=True,  # Settings(default_engine=...) as well as its aliases
    )

    data_dir: Path = Field(
        default=Path("photoremix-data"),
        description=(
            "Folder for the SQLite database, the generated signing secret and stored outputs. "
            "Relative paths are taken from the working directory. Default: ./photoremix-data."
        ),
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PHOTOREMIX_DATABASE_URL", "DATABASE_URL"),
        description=(
            "SQLAlchemy URL of the database (e.g. postgresql+psycopg://user:pw@host/db). "
            "Also read from DATABASE_URL. Default: SQLite in WAL mode at "
            "<data_dir>/photoremix.db."
        ),
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Secret for signed download URLs (at least 16 characters); must be the same on "
            "every server instance. Default: 32 random bytes generated once and kept in "
            "<data_dir>/signing-secret (mode 0600)."
        ),
    )
    starting_credit: Price = Field(
        default=Decimal("10.00"),
        description="Prepaid credit in dollars given to a new account by `photoremix keys create`.",
    )
    price_per_output: Price = Field(
        default=Decimal("0.12"),
        description="Dollars charged per output image in which no profile was recognised.",
    )
    price_per_recognised_output: Price = Field(
        default=Decimal("0.15"),
        description=(
            "Dollars charged per output image in which a profile was recognised; also the "
            "worst case reserved per requested output before work starts."
        ),
    )
    price_profile_standard: Price = Field(
        default=Decimal("2.90"),
        description=(
            "Dollars charged for training a standard-tier profile; reserved when the profile "
            "is added, charged when it is READY, refunded when training fails."
        ),
    )
    price_profile_fast: Price = Field(
        default=Decimal("1.49"),
        description="Dollars charged for training a fast-tier profile (billed like standard).",
    )
    profile_min_photos: int = Field(
        default=5,
        ge=1,
        le=10,
        description=(
            "Fewest photos a profile is added with and trained from. The fast tier takes "
            "this many to 10 photos, the standard tier twice this many to 50 (5: the hosted "
            "API's 5-10 and 10-50). Benchmarks with few photos per person lower it."
        ),
    )

    # --- the HTTP service -------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `photoremix serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `photoremix serve` uses.")
    public_url: str | None = Field(
        default=None,
        description=(
            "Base URL clients reach the service at (e.g. https://remix.example.com), used in "
            "download and poll URLs. Default: the URL of the incoming request."
        ),
    )
    default_engine: str = Field(
        default="classic",
        validation_alias=AliasChoices("PHOTOREMIX_DEFAULT_ENGINE", "PHOTOREMIX_ENGINE"),
        description="Engine used when a request names none: classic, gemini or qwen.",
    )
    engines: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["classic"],
        description=(
            "Enabled engines, comma-separated (e.g. classic,gemini). Requests may pick one "
            "with the `engine` extension field; the default engine must be enabled."
        ),
    )
    # --- gemini (the hosted model Remix is pinned to, through google-genai) ---------------
    gemini_api_key: SecretStr | None = Field(
        default=None, description="Google AI API key for the gemini engine."
    )
    gemini_model: str = Field(
        default="gemini-3.1-flash-image",
        description='Gemini image model id ("Nano Banana 2" by default; any id accepted).',
    )
    gemini_base_url: str | None = Field(
        default=None, description="Override of the Gemini API base URL (e.g. a proxy)."
    )
    gemini_timeout_s: float = Field(
        default=120.0, gt=0, description="Time limit of one Gemini call, in seconds."
    )
    gemini_concurrency: int = Field(
        default=4, ge=1, le=32, description="Gemini calls in flight at once (per process)."
    )
    gemini_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a Gemini call on 429, 5xx or timeout."
    )
    # --- qwen (self-hosted Qwen-Image-Edit through diffusers; the `qwen` extra) ------------
    qwen_model_dir: Path | None = Field(
        default=None,
        description="Local folder of Qwen-Image-Edit-2511 weights (diffusers layout).",
    )
    qwen_lora_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="LoRA weight files to load, comma-separated (e.g. a Lightning LoRA).",
    )
    qwen_steps: int = Field(default=40, ge=1, le=200, description="Denoising steps per image.")
    qwen_true_cfg_scale: float = Field(
        default=4.0, ge=1.0, le=20.0, description="True CFG scale (1 disables the negative pass)."
    )
    qwen_device: str = Field(default="cuda", description='Torch device: "cuda" or "cpu".')
    qwen_cpu_offload: bool = Field(
        default=False, description="Offload idle model parts to CPU (for smaller GPUs)."
    )
    workers: int = Field(
        default_factory=lambda: max(1, min(4, os.cpu_count() or 1)),
        ge=1,
        le=64,
        description="Remixes run at once (engine threads). Default: CPU cores, at most 4.",
    )
    queue_size: int = Field(
        default=16,
        ge=0,
        le=1000,
        description=(
            "Remixes that may wait for a free worker; beyond that, new requests get 503 "
            "with Retry-After."
        ),
    )
    sync_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Time limit of a synchronous remix; past it the answer is 504 and a refund.",
    )
    async_timeout_s: float = Field(
        default=1800.0, gt=0, description="Time limit of an async job's run; then failed + refund."
    )
    max_body_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (413 beyond). Base64 adds a third to images.",
    )
    fetch_max_bytes: int = Field(
        default=30 * 1024 * 1024, ge=1024, description="Largest image fetched from a URL."
    )
    fetch_timeout_s: float = Field(
        default=20.0, gt=0, description="Time budget for fetching one image URL."
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts, IPs or CIDR networks exempt from the public-address check for image URLs "
            "and allowed as plain-http callback URLs (local development and tests), e.g. "
            'PHOTOREMIX_ALLOW_HOSTS=\'["127.0.0.1","localhost"]\'. Empty in production.'
        ),
    )
    retention_hours: float = Field(
        default=48.0,
        gt=0,
        description="Stored outputs are deleted this long after they were written.",
    )
    download_url_ttl_hours: float = Field(
        default=24.0, gt=0, description="How long a signed download URL stays valid."
    )
    callback_attempts: int = Field(
        default=6, ge=1, le=20, description="Delivery attempts for one job callback."
    )
    callback_first_backoff_s: float = Field(
        default=2.0, gt=0, description="Wait before the second callback attempt; doubles after."
    )

    identity_max_distance: float = Field(
        default=0.2,
        gt=0,
        le=1.0,
        description=(
            "Largest dlib embedding distance allowed between a face in the input and the same "
            "face in an output; beyond it the output is rendered again with stronger face "
            "protection (0.6 means 'a different person')."
        ),
    )
    identity_rerender_attempts: int = Field(
        default=2, ge=0, le=5, description="Re-renders allowed per output to keep a face."
    )

    @field_validator("engines", "qwen_lora_paths", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.database_url is None:
            # frozen model: set the derived default the way pydantic itself would.
            database_path = self.data_dir.expanduser().resolve() / DATABASE_FILE
            object.__setattr__(self, "database_url", f"sqlite:///{database_path}")
        if self.price_per_recognised_output < self.price_per_output:
            raise ValueError(
                "price_per_recognised_output must be at least price_per_output, because it is "
                "the worst case reserved before work"
            )
        if self.default_engine not in self.engines:
            raise ValueError(
                f"default_engine {self.default_engine!r} is not among the enabled engines "
                f"{self.engines}; add it to PHOTOREMIX_ENGINES"
            )
        if self.signing_secret is not None and len(self.signing_secret.get_secret_value()) < 16:
            raise ValueError("signing_secret must be at least 16 characters")
        return self

    def signing_secret_bytes(self) -> bytes:
        """The URL signing secret: the configured one, else the one generated in ``data_dir``.

        The generated secret is created on first use with permissions 0600 and read back on
        later calls, so every process using the same ``data_dir`` signs alike.
        """
        if self.signing_secret is not None:
            return self.signing_secret.get_secret_value().encode("utf-8")
        path = self.data_dir.expanduser() / SIGNING_SECRET_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: when two processes start at once, exactly one creates the file.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_secret_file(path)
        secret = secrets.token_bytes(_GENERATED_SECRET_BYTES)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secret.hex() + "\n")
        return secret


def _read_secret_file(path: Path) -> bytes:
    try:
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise SettingsError(f"{path} is corrupt: delete it to generate a new one")
    return secret


def load_settings() -> Settings:
    """Read settings from the environment and ``$PHOTOREMIX_SETTINGS_FILE`` (uncached)."""
    settings_file = os.environ.get(SETTINGS_FILE_ENV)
    if settings_file and not Path(settings_file).is_file():
        raise SettingsError(f"{SETTINGS_FILE_ENV} names {settings_file!r}, which is not a file")
    try:
        return Settings(_env_file=settings_file or None)  # type: ignore[call-arg]
    except ValidationError as error:
        problems = "; ".join(
            f"{_variable_name(problem['loc'])}: {problem['msg']}" for problem in error.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def _variable_name(location: tuple[int | str, ...]) -> str:
    """The environment variable an error is about, e.g. ``PHOTOREMIX_PRICE_PER_OUTPUT``."""
    if not location:
        return "settings"
    name = str(location[0]).upper()
    return name if name.startswith("PHOTOREMIX_") else f"PHOTOREMIX_{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once (``get_settings.cache_clear()`` reloads)."""
    return load_settings()
