"""Typed settings: defaults, then the TOML file, then RETENSHUN_<SECTION>_<KEY> env vars,
then command-line flags. Every error names the key and says how to fix it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec


class ConfigError(Exception):
    """A setting is wrong; the message names it and the fix."""


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8470
    # Public base URL used in links we send out (unsubscribe, tracking, push clicks).
    public_url: str = ""
    allowed_origins: list[str] = []
    # Seconds to finish in-flight requests on SIGTERM before closing the store.
    shutdown_timeout: float = 10.0


class StoreSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    backend: str = "sqlite"
    data_dir: str = "./retenshun-data"
    # NORMAL: a commit survives a process crash; a power loss may drop the last
    # transactions. FULL: fsync on every commit, survives power loss, slower.
    synchronous: str = "NORMAL"
    postgres_dsn: str = ""
    # messageId dedupe is exact for at least this long.
    dedupe_window: str = "7d"
    # Upper bound of operations gathered into one group commit.
    max_batch_ops: int = 2000


class AuthSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    secret_keys: list[str] = []
    publishable_keys: list[str] = []
    signing_secret: str = ""
    admin_password: str = ""
    user_token_ttl: str = "24h"


class LimitSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    # Requests per second per key (token bucket, burst = 2x). 0 turns the limit off.
    publishable_rate: float = 2000.0
    # The same per (publishable key, client address): the key is in every
    # visitor's browser, so one page or one abuser cannot spend the app's allowance.
    publishable_client_rate: float = 200.0
    secret_rate: float = 0.0


class LogSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    level: str = "info"
    format: str = "json"
    access_log: bool = False


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    # Sections owned by later features (email, push, webhooks, engine) are kept raw
    # here and typed by the module that owns them.
    email: dict[str, Any] = {}
    push: dict[str, Any] = {}
    webhooks: dict[str, Any] = {}
    engine: dict[str, Any] = {}

    @property
    def data_dir(self) -> Path:
        return Path(self.store.data_dir)


def _coerce(raw: str, current: Any, name: str) -> Any:
    """Env vars are strings; turn one into the type of the setting it overrides."""
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if isinstance(current, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    defaults = msgspec.to_builtins(Config())
    for name, raw in env.items():
        if not name.startswith("RETENSHUN_"):
            continue
        rest = name[len("RETENSHUN_"):].lower()
        section, _, key = rest.partition("_")
        if not key:
            continue
        if section not in defaults:
            continue
        section_defaults = defaults[section]
        if isinstance(section_defaults, dict) and key in section_defaults:
            data.setdefault(section, {})[key] = _coerce(raw, section_defaults[key], name)
        elif section in ("email", "push", "engine"):
            # Free-form sections: keep the string; their owners coerce.
            data.setdefault(section, {})[key] = raw


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Config:
    """Build the config. ``path`` None means ``./retenshund.toml`` when it exists."""
    data: dict[str, Any] = {}
    if path is None and Path("retenshund.toml").exists():
        path = "retenshund.toml"
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist (copy config.example.toml to start one)")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p}: {exc}") from None
    _apply_env(data, dict(os.environ) if env is None else env)
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                data.setdefault(section, {})[key] = value
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config: {_path_message(str(exc))}") from None
    _validate(config)
    return config


def _path_message(text: str) -> str:
    # msgspec says "... - at `$.store.synchronous`"; name the key the TOML way.
    msg, sep, where = text.rpartition(" - at ")
    if sep:
        return f"{where.strip('`').removeprefix('$.')}: {msg}"
    return text


def _validate(config: Config) -> None:
    if config.store.backend == "postgres":
        # Refused here, with the config's other errors, not by the store at start.
        raise ConfigError("store.backend: 'postgres' is not available in this version; use \"sqlite\"")
    if config.store.backend != "sqlite":
        raise ConfigError("store.backend: must be \"sqlite\"")
    if config.store.synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
        # Not OFF: a 200 on ingestion promises the write survives a crash of the process.
        raise ConfigError("store.synchronous: must be NORMAL (default) or FULL (or EXTRA, FULL and more)")
    if config.log.level.lower() not in ("debug", "info", "warning", "warn", "error", "critical"):
        raise ConfigError("log.level: must be debug, info (default), warning or error")
    if config.log.format.lower() not in ("json", "text"):
        raise ConfigError("log.format: must be \"json\" (default) or \"text\"")
    if not (0 < config.server.port < 65536):
        raise ConfigError("server.port: must be between 1 and 65535")
    if config.auth.signing_secret and len(config.auth.signing_secret) < 16:
        raise ConfigError("auth.signing_secret: use at least 16 characters (32 random bytes is better)")
    from .durations import DefinitionError, parse_duration

    for field, value in (("store.dedupe_window", config.store.dedupe_window),
                         ("auth.user_token_ttl", config.auth.user_token_ttl)):
        try:
            parse_duration(value, field)
        except DefinitionError as exc:
            raise ConfigError(f"{exc.field}: {exc.message}") from None
    if not 1000 <= parse_duration(config.auth.user_token_ttl) <= 366 * 86_400_000:
        # What a token request may ask for; the default must be one of those.
        raise ConfigError("auth.user_token_ttl: between 1s and 366d")
