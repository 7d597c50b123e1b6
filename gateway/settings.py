"""Settings: loaded once from settings.toml into frozen dataclasses.

Unknown sections or keys, and values of the wrong type, stop the gateway at start
with a message naming the key. Secrets come from environment variables only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
    # When set, every provider webhook (USSD and SMS) must carry it as ?token= or the
    # X-Gateway-Token header.
    webhook_token_env: str = "GATEWAY_WEBHOOK_TOKEN"
    webhook_token: str = field(default="", repr=False)
    # ID numbers are stored only as a keyed hash (and their last three digits); OTP codes
    # too. Without this variable the secret key above is used.
    id_key_env: str = "GATEWAY_ID_KEY"
    id_key: str = field(default="", repr=False)


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
    # Bounded work per hop: a request carrying more is answered END with an apology.
    max_inputs_per_hop: int = 12
    max_request_chars: int = 1024


@dataclass(frozen=True, slots=True)
class LocaleSettings:
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True, slots=True)
class SmsSettings:
    # console | kannel | smpp | http
    transport: str = "console"
    # unaccent (Vietnamese made GSM-7) | unicode (keep diacritics) | auto
    encoding_policy: str = "unaccent"
    sender: str = ""
    # Base URL the providers can reach this gateway on (Kannel's dlr-url).
    public_base_url: str = "http://127.0.0.1:8080"
    run_dispatcher: bool = True
    # Inside the server the dispatcher holds the database lease "dispatcher": one process
    # at a time sends (several workers), another takes over this long after it died.
    dispatcher_lease_seconds: int = 15
    parts_per_second: int = 50
    max_attempts: int = 6
    retry_base_seconds: int = 5
    retry_max_seconds: int = 900
    message_ttl_seconds: int = 86400
    claim_lease_seconds: int = 90
    dispatch_batch: int = 100
    dispatch_concurrency: int = 20
    idle_poll_seconds: float = 0.5
    # Non-urgent SMS wait for the end of quiet hours (local time); OTPs are urgent.
    quiet_start: str = "21:00"
    quiet_end: str = "07:00"
    inbound_duplicate_seconds: int = 120
    # Every SMS the gateway writes is cut to this many parts, saying so in the text.
    max_parts: int = 3
    # A longer incoming text is refused (400): no SMS is longer (255 parts of 153).
    max_inbound_chars: int = 40000


@dataclass(frozen=True, slots=True)
class OtpSettings:
    """One-time codes sent by SMS (registration, PIN reset, deletion, the portal's API)."""

    code_ttl_seconds: int = 300
    max_checks: int = 5
    resend_seconds: int = 60
    per_phone_per_hour: int = 5
    global_per_minute: int = 300


@dataclass(frozen=True, slots=True)
class PinSettings:
    max_failures: int = 5
    lock_seconds: int = 900
    # scrypt cost (N must be a power of two); run off the event loop.
    scrypt_n: int = 16384
    scrypt_r: int = 8
    scrypt_p: int = 1


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long records are kept; the purger deletes in bounded batches."""

    # Run the purger inside the server (one process at a time holds its lease).
    run_purger: bool = True
    interval_seconds: int = 60
    batch_size: int = 1000
    # A session is deleted this long after its TTL and resume window have both run out.
    session_grace_seconds: int = 60
    inbound_sms_days: int = 30
    outbound_sms_days: int = 90
    lease_seconds: int = 120
    # OTP challenges (keyed hashes) are deleted this long after they expired.
    otp_challenge_hours: int = 24
    # The one-stop system's event ids (replays are recognised by them) are kept this long.
    dossier_event_days: int = 180
    # The clerks' audit log (who did what, when, from which channel).
    audit_log_days: int = 365


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """SMS about dossiers: status changes, pickup alerts, reminders."""

    # A status SMS waits this long before it may go: a change and its reversal inside the
    # window send one message, the latest.
    debounce_seconds: int = 120
    # Reminders when a ready result (status 9) is not collected after this many days; at
    # most two, 0 turns one off.
    reminder_first_days: int = 3
    reminder_second_days: int = 7
    # Look for due reminders this often, inside the server (one process at a time: a lease)
    # and as `python -m gateway remind`.
    run_reminders: bool = True
    reminder_interval_seconds: int = 300


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The clerks' web console at /console/."""

    # A console session with no request for this long is over.
    session_idle_minutes: int = 30
    # Wrong passwords in a row before the account locks, and for how long.
    max_failed_logins: int = 10
    lock_minutes: int = 15
    # Cookies only over HTTPS (keep true in production behind TLS; browsers treat
    # http://127.0.0.1 as secure, so make run works with it too).
    secure_cookies: bool = True


@dataclass(frozen=True, slots=True)
class KannelSettings:
    sendsms_url: str = "http://127.0.0.1:13013/cgi-bin/sendsms"
    username: str = "gateway"
    password_env: str = "GATEWAY_KANNEL_PASSWORD"
    password: str = field(default="", repr=False)
    # 1 delivered + 2 failed + 4 queued + 8 at SMSC + 16 SMSC failure
    dlr_mask: int = 31
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class SmppSettings:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "gateway"
    password_env: str = "GATEWAY_SMPP_PASSWORD"
    password: str = field(default="", repr=False)
    system_type: str = ""
    source_addr: str = ""
    window: int = 10
    enquire_link_seconds: int = 30
    reconnect_seconds: int = 5


@dataclass(frozen=True, slots=True)
class HttpSmsSettings:
    """An HTTP aggregator in the Africa's Talking style."""

    url: str = "http://127.0.0.1:8090/version1/messaging"
    username: str = "sandbox"
    api_key_env: str = "GATEWAY_HTTP_SMS_API_KEY"
    api_key: str = field(default="", repr=False)
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    security: SecuritySettings = SecuritySettings()
    logging: LoggingSettings = LoggingSettings()
    ussd: UssdSettings = UssdSettings()
    locale: LocaleSettings = LocaleSettings()
    sms: SmsSettings = SmsSettings()
    retention: RetentionSettings = RetentionSettings()
    otp: OtpSettings = OtpSettings()
    pin: PinSettings = PinSettings()
    notifications: NotificationSettings = NotificationSettings()
    console: ConsoleSettings = ConsoleSettings()
    kannel: KannelSettings = KannelSettings()
    smpp: SmppSettings = SmppSettings()
    http_sms: HttpSmsSettings = HttpSmsSettings()

    def replace(self, **sections: Mapping[str, Any]) -> "Settings":
        """A copy with some keys changed, e.g. ``replace(ussd={"screen_limit": 182})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return _validate(dataclasses.replace(self, **changed))


# Secrets: a key ``X`` next to a key ``X_env`` is read from the environment variable that
# ``X_env`` names, and may never be written in the file.
def _env_only(section_cls: type) -> set[str]:
    names = {f.name for f in dataclasses.fields(section_cls)}
    return {name for name in names if f"{name}_env" in names}


def _check_type(where: str, value: Any, expected: Any) -> Any:
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is str:
        ok = isinstance(value, str)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
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
            if key not in known_keys or key in _env_only(section_cls):
                allowed = sorted(known_keys - _env_only(section_cls))
                raise SettingsError(f"unknown settings key {where}; known: {', '.join(allowed)}")
            values[key] = _check_type(where, value, hints[key])
        sections[section_name] = section_cls(**values)
    settings = Settings(**sections)

    database_url = environ.get("GATEWAY_DATABASE_URL")
    if database_url:
        settings = dataclasses.replace(
            settings, database=dataclasses.replace(settings.database, url=database_url)
        )
    for section_field in dataclasses.fields(Settings):
        section = getattr(settings, section_field.name)
        secrets = {}
        for name in _env_only(type(section)):
            value = environ.get(getattr(section, f"{name}_env"))
            if value:
                secrets[name] = value
        if secrets:
            settings = dataclasses.replace(settings, **{section_field.name: dataclasses.replace(section, **secrets)})
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
    for key in ("max_inputs_per_hop", "max_request_chars"):
        if getattr(ussd, key) < 1:
            raise SettingsError(f"ussd.{key} must be at least 1")
    if settings.logging.format not in ("auto", "console", "json"):
        raise SettingsError(f"logging.format must be auto, console or json, got {settings.logging.format!r}")
    if settings.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError("logging.level must be debug, info, warning or error")
    sms = settings.sms
    if sms.transport not in ("console", "kannel", "smpp", "http"):
        raise SettingsError(f"sms.transport must be console, kannel, smpp or http, got {sms.transport!r}")
    if sms.encoding_policy not in ("unaccent", "unicode", "auto"):
        raise SettingsError(f"sms.encoding_policy must be unaccent, unicode or auto, got {sms.encoding_policy!r}")
    for key in ("quiet_start", "quiet_end"):
        try:
            parse_clock(getattr(sms, key))
        except ValueError as exc:
            raise SettingsError(f"sms.{key}: expected HH:MM, got {getattr(sms, key)!r}") from exc
    for key in ("parts_per_second", "max_attempts", "dispatch_batch", "dispatch_concurrency", "claim_lease_seconds",
                "dispatcher_lease_seconds", "max_parts", "max_inbound_chars"):
        if getattr(sms, key) < 1:
            raise SettingsError(f"sms.{key} must be at least 1")
    otp = settings.otp
    for key in ("code_ttl_seconds", "max_checks", "per_phone_per_hour", "global_per_minute"):
        if getattr(otp, key) < 1:
            raise SettingsError(f"otp.{key} must be at least 1")
    if otp.resend_seconds < 0:
        raise SettingsError("otp.resend_seconds must not be negative")
    pin = settings.pin
    if pin.max_failures < 1 or pin.lock_seconds < 1:
        raise SettingsError("pin.max_failures and pin.lock_seconds must be at least 1")
    if pin.scrypt_n < 2 or pin.scrypt_n & (pin.scrypt_n - 1):
        raise SettingsError(f"pin.scrypt_n must be a power of two, got {pin.scrypt_n}")
    retention = settings.retention
    for key in ("interval_seconds", "batch_size", "inbound_sms_days", "outbound_sms_days", "lease_seconds",
                "otp_challenge_hours", "dossier_event_days", "audit_log_days"):
        if getattr(retention, key) < 1:
            raise SettingsError(f"retention.{key} must be at least 1")
    if retention.session_grace_seconds < 0:
        raise SettingsError("retention.session_grace_seconds must not be negative")
    notifications = settings.notifications
    for key in ("debounce_seconds", "reminder_first_days", "reminder_second_days"):
        if getattr(notifications, key) < 0:
            raise SettingsError(f"notifications.{key} must not be negative")
    if notifications.reminder_interval_seconds < 1:
        raise SettingsError("notifications.reminder_interval_seconds must be at least 1")
    if 0 < notifications.reminder_second_days <= notifications.reminder_first_days:
        raise SettingsError("notifications.reminder_second_days must come after reminder_first_days (or be 0)")
    console = settings.console
    for key in ("session_idle_minutes", "max_failed_logins", "lock_minutes"):
        if getattr(console, key) < 1:
            raise SettingsError(f"console.{key} must be at least 1")
    if not 0 < settings.server.port < 65536:
        raise SettingsError(f"server.port out of range: {settings.server.port}")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(settings.locale.timezone)
    except Exception as exc:  # noqa: BLE001 - any failure means the name is unusable
        raise SettingsError(f"locale.timezone: unknown time zone {settings.locale.timezone!r}") from exc
    return settings


def parse_clock(value: str) -> "dt.time":
    """"22:00" -> time(22, 0)."""
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


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
