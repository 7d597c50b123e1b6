"""Settings: loaded once from settings.toml into frozen dataclasses.

Unknown sections or keys, and values of the wrong type, stop the gateway at start
with a message naming the key. Secrets come from environment variables only.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "settings.toml"
DEV_SECRET_KEY = "development-only-secret-key"
MAX_USSD_SCREEN = 182


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = "sqlite://var/gateway.sqlite3"
    migrate_on_start: bool = True


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    secret_key_env: str = "GATEWAY_SECRET_KEY"
    # Filled from the environment variable named above, never from the file.
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class UssdSettings:
    screen_limit: int = 160
    session_ttl_seconds: int = 180
    resume_window_seconds: int = 300
    default_language: str = "vi"
    catalogue_cache_seconds: int = 60


@dataclass(frozen=True, slots=True)
class LocaleSettings:
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    security: SecuritySettings = SecuritySettings()
    logging: LoggingSettings = LoggingSettings()
    ussd: UssdSettings = UssdSettings()
    locale: LocaleSettings = LocaleSettings()

    def replace(self, **sections: Mapping[str, Any]) -> "Settings":
        """A copy with some keys changed, e.g. ``replace(ussd={"screen_limit": 182})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return _validate(dataclasses.replace(self, **changed))


# Keys that may only come from the environment.
_ENV_ONLY = {("security", "secret_key")}


def _check_type(where: str, value: Any, expected: Any) -> Any:
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - only the types above are used
        raise SettingsError(f"{where}: unsupported type {expected!r}")
    if not ok:
        raise SettingsError(
            f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def from_mapping(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from a parsed TOML mapping plus the environment."""
    environ = os.environ if environ is None else environ
    sections: dict[str, Any] = {}
    known_sections = {f.name: f for f in dataclasses.fields(Settings)}
    for section_name, section_values in raw.items():
        if section_name not in known_sections:
            raise SettingsError(
                f"unknown settings section [{section_name}]; known: {', '.join(known_sections)}"
            )
        if not isinstance(section_values, dict):
            raise SettingsError(f"[{section_name}] must be a table")
        section_cls = known_sections[section_name].default.__class__
        hints = typing.get_type_hints(section_cls)
        known_keys = {f.name for f in dataclasses.fields(section_cls)}
        values = {}
        for key, value in section_values.items():
            where = f"{section_name}.{key}"
            if key not in known_keys or (section_name, key) in _ENV_ONLY:
                allowed = sorted(known_keys - {k for s, k in _ENV_ONLY if s == section_name})
                raise SettingsError(f"unknown settings key {where}; known: {', '.join(allowed)}")
            values[key] = _check_type(where, value, hints[key])
        sections[section_name] = section_cls(**values)
    settings = Settings(**sections)

    database_url = environ.get("GATEWAY_DATABASE_URL")
    if database_url:
        settings = dataclasses.replace(
            settings, database=dataclasses.replace(settings.database, url=database_url)
        )
    secret = environ.get(settings.security.secret_key_env)
    if secret:
        settings = dataclasses.replace(
            settings, security=dataclasses.replace(settings.security, secret_key=secret)
        )
    return _validate(settings)


def _validate(settings: Settings) -> Settings:
    ussd = settings.ussd
    if not 60 <= ussd.screen_limit <= MAX_USSD_SCREEN:
        raise SettingsError(
            f"ussd.screen_limit must be between 60 and {MAX_USSD_SCREEN}, got {ussd.screen_limit}"
        )
    if ussd.default_language not in ("vi", "en"):
        raise SettingsError(f"ussd.default_language must be 'vi' or 'en', got {ussd.default_language!r}")
    for key in ("session_ttl_seconds", "resume_window_seconds", "catalogue_cache_seconds"):
        if getattr(ussd, key) < 0:
            raise SettingsError(f"ussd.{key} must not be negative")
    if settings.logging.format not in ("auto", "console", "json"):
        raise SettingsError(f"logging.format must be auto, console or json, got {settings.logging.format!r}")
    if settings.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"logging.level must be debug, info, warning or error")
    if not 0 < settings.server.port < 65536:
        raise SettingsError(f"server.port out of range: {settings.server.port}")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(settings.locale.timezone)
    except Exception as exc:  # noqa: BLE001 - any failure means the name is unusable
        raise SettingsError(f"locale.timezone: unknown time zone {settings.locale.timezone!r}") from exc
    return settings


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings.toml (or ``GATEWAY_SETTINGS``, or the given path)."""
    environ = os.environ if environ is None else environ
    settings_path = Path(path or environ.get("GATEWAY_SETTINGS") or DEFAULT_PATH)
    try:
        with settings_path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file not found: {settings_path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{settings_path}: {exc}") from exc
    return from_mapping(raw, environ)
