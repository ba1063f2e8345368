"""Settings read from the environment, parsed strictly.

Every variable has an embedded default that needs nothing installed (SQLite, in-memory channel
layer, engine inside the web process). A value that does not parse stops start-up with an
error naming the variable, never a silent fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from pydantic import AliasChoices, Field, IPvAnyNetwork, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inference import default_model

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
# SmolLM2-135M-Instruct, made by `manage.py get_default_model` (inference/default_model.py).
DEFAULT_BASE_MODEL = str(VAR_DIR / "models" / default_model.DIR_NAME)


class Environment(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")

    DEBUG: bool = False
    SECRET_KEY: str | None = Field(default=None, min_length=32)
    ALLOWED_HOSTS: Annotated[list[str], NoDecode] = ["127.0.0.1", "localhost", "[::1]"]
    CSRF_TRUSTED_ORIGINS: Annotated[list[str], NoDecode] = []
    # Proxies whose X-Forwarded-For names the client (chatsite/proxies.py): addresses or networks.
    TRUSTED_PROXIES: Annotated[list[IPvAnyNetwork], NoDecode] = []
    PORT: int = Field(default=8000, ge=1, le=65535)

    DATABASE_URL: str = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    DATABASE_POOL_SIZE: int = Field(default=20, ge=1)  # PostgreSQL connections per process
    REDIS_URL: str | None = None
    REDIS_MAX_CONNECTIONS: int = Field(default=1024, ge=1)  # per web process (celery mode)

    INFERENCE_MODE: Literal["local", "celery", "lorax"] = "local"
    LORAX_URL: str | None = Field(default=None, pattern=r"^https?://")  # INFERENCE_MODE=lorax
    LORAX_API_KEY: str | None = None  # sent to LoRAX as a Bearer token
    BASE_MODEL: str = DEFAULT_BASE_MODEL
    # The base model's Linear weights: float, or int8 with float adapters (CPU only).
    BASE_QUANTIZATION: Literal["none", "int8"] = "none"
    ADAPTERS_DIR: Path = VAR_DIR / "adapters"
    ENGINE_DEVICE: str | None = None  # "cuda", "cpu"; unset picks cuda when present
    ENGINE_THREADS: int | None = Field(default=None, ge=1)
    ENGINE_WARMUP: bool = True  # load the model when the web process starts (local mode)
    ENGINE_MAX_BATCH_SIZE: int = Field(default=32, ge=1)  # rows decoded together
    ENGINE_MAX_BATCH_TOKENS: int = Field(default=65536, ge=1)  # prompt + new tokens, all rows
    ENGINE_MAX_QUEUED: int = Field(default=256, ge=0)  # waiting beyond that: `overloaded`
    ADAPTER_MAX_RANK: int = Field(default=64, ge=1)  # refused above this LoRA rank
    ADAPTER_MAX_BYTES: int = Field(default=2 * 1024**3, ge=1)  # config + weights, in bytes
    ADAPTER_CACHE_SLOTS: int = Field(default=32, ge=1)  # adapters one engine holds at once

    STREAM_RESUME_GRACE_S: float = Field(default=10.0, ge=0)
    STREAM_MAX_BYTES: int = Field(default=1_000_000, ge=1)
    STREAM_MAX_DURATION_S: float = Field(default=600.0, gt=0)
    TOKEN_LOG_TTL_S: int = Field(default=300, ge=1)
    WORKER_HEARTBEAT_S: float = Field(default=1.0, gt=0)
    WORKER_LOST_AFTER_S: float = Field(default=15.0, gt=0)
    WORKER_CONCURRENCY: int = Field(default=16, ge=1)
    FAILOVER_MAX: int = Field(default=1, ge=0)  # celery mode: per answer; 0 ends it worker_lost
    ROUTING_AFFINITY: bool = True  # celery mode: send a task to a worker holding its adapter
    MAX_PROMPT_CHARS: int = Field(default=32000, ge=1)
    MAX_NEW_TOKENS: int = Field(default=1024, ge=1)
    DEFAULT_MAX_NEW_TOKENS: int = Field(default=256, ge=1)
    # Per user, on every transport (chatsite/chat/conversations/limits.py). The old API_* names still work.
    MAX_LIVE_ANSWERS: int = Field(
        default=4, ge=1, validation_alias=AliasChoices("MAX_LIVE_ANSWERS", "API_MAX_CONCURRENT")
    )
    METRICS_TOKEN: str | None = Field(default=None, min_length=16)  # bearer token for /metrics
    WORKER_METRICS_PORT: int | None = Field(default=None, ge=1, le=65535)  # off when unset
    WORKER_METRICS_ADDR: str = "127.0.0.1"
    # Outgoing mail (password reset links): smtp://, smtp+tls:// (STARTTLS), smtps:// (TLS) with
    # user:password@host:port, or console:// (printed). Unset: no mail, and no reset link.
    EMAIL_URL: str | None = Field(default=None, pattern=r"^(smtp|smtp\+tls|smtps|console)://")
    DEFAULT_FROM_EMAIL: str = "patchbay@localhost"
    RATE_LIMIT: str = Field(
        default="120/minute",
        pattern=r"^[1-9][0-9]*/(second|minute|hour|day)$",
        validation_alias=AliasChoices("RATE_LIMIT", "API_RATE_LIMIT"),
    )

    @field_validator("ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "TRUSTED_PROXIES", mode="before")
    @classmethod
    def _comma_list(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


def read_environment() -> Environment:
    try:
        return Environment()
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ImproperlyConfigured(f"Bad environment setting: {problems}") from None


_SECRET = (
    "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN", "LORAX_API_KEY", "EMAIL_URL",
)


def _describe(err) -> str:
    name = ".".join(str(part) for part in err["loc"])
    shown = "" if name in _SECRET else f"={err.get('input')!r}"
    return f"{name}{shown}: {err['msg']}"


def secret_key(configured: str | None) -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    if configured:
        return configured
    path = VAR_DIR / "secret_key"
    if not path.exists():
        from django.core.management.utils import get_random_secret_key

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


_MAIL_BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "smtp+tls": "django.core.mail.backends.smtp.EmailBackend",
    "smtps": "django.core.mail.backends.smtp.EmailBackend",
}
_MAIL_PORTS = {"smtp": 25, "smtp+tls": 587, "smtps": 465}


def email_settings(url: str | None) -> dict:
    """Django's EMAIL_* settings from EMAIL_URL (django-environ's form); unset: the console,
    and MAIL_ENABLED false so that no page offers a reset link nobody would receive."""
    if not url:
        return {"EMAIL_BACKEND": _MAIL_BACKENDS["console"], "MAIL_ENABLED": False}
    parts = urlsplit(url)
    scheme = parts.scheme
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("Bad environment setting: EMAIL_URL has a bad port.") from None
    if scheme != "console" and not parts.hostname:
        raise ImproperlyConfigured("Bad environment setting: EMAIL_URL needs a host name.")
    return {
        "EMAIL_BACKEND": _MAIL_BACKENDS[scheme],
        "EMAIL_HOST": parts.hostname or "localhost",
        "EMAIL_PORT": port or _MAIL_PORTS.get(scheme, 25),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": scheme == "smtp+tls",
        "EMAIL_USE_SSL": scheme == "smtps",
        "MAIL_ENABLED": True,
    }
