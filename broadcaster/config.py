"""channels.toml → frozen dataclasses: validation, defaults and secret references.

Every problem raises ConfigError naming the file, the channel and the key, with what
to do. Secrets are never literal strings in the file: ``{ env = "NAME" }`` reads an
environment variable, ``{ file = "name" }`` reads a credential file (a relative name
is looked up in ``$CREDENTIALS_DIRECTORY`` first, as systemd's LoadCredential=
provides it, then beside the configuration file). Resolved secrets are wrapped in
Secret, whose repr and str never show the value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broadcaster.errors import ConfigError

CONFIG_ENV = "BROADCASTER_CONFIG"
DEFAULT_CONFIG = "channels.toml"


class Secret:
    """A resolved secret. Shows where it came from, never what it is."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        """The secret itself: only for the one call that needs it."""
        return self._value

    @property
    def source(self) -> str:
        return self._source

    def __repr__(self) -> str:
        return f"Secret({self._source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._source)


class ConfigProblem(Exception):
    """Raised inside validation with the key at fault; wrapped into ConfigError."""

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PostgresDatabase:
    """``[service] database`` as a ``postgresql://`` URI (libpq syntax, several hosts
    allowed) and ``database_password``; without one, libpq's ``.pgpass`` and
    ``PGPASSWORD`` apply. The URI never holds a password, so it can be shown."""

    uri: str
    password: Secret | None
    # Commands that need no database may run without the password's source (see
    # STRUCTURE_ONLY); the problem is kept and raised when the ledger is opened.
    password_problem: ConfigError | None = None

    def check_password(self) -> None:
        if self.password_problem is not None:
            raise self.password_problem

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class ServiceConfig:
    """The [service] table."""

    city: str
    info_url: str
    listen: Listen
    database: Path | PostgresDatabase
    templates: Path
    exercise_banner: str
    default_language: str
    timezone: str
    require_second_officer: tuple[str, ...]
    retention_days: int
    log_format: Literal["text", "json"]
    node: str = "local"  # this daemon's name in the ledger (default: the host name)
    lease_seconds: float = 10.0  # an attempt's claim lapses unless renewed in this time
    expected_nodes: int = 1  # for the "fewer nodes than expected" alert


@dataclass(frozen=True)
class ChannelConfig:
    """One [[channel]]: the keys every kind understands plus ``settings`` for its own."""

    name: str
    kind: str
    languages: tuple[str, ...]
    exercise: bool
    timeout: float
    give_up_after: float
    on_unknown: str
    rate: float
    max_in_flight: int
    enabled: bool
    health_interval: float
    settings: Any  # the kind's own config dataclass (TelegramConfig, …)


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    path: Path
    service: ServiceConfig
    channels: tuple[ChannelConfig, ...]

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)

    def enabled_channels(self) -> tuple[ChannelConfig, ...]:
        return tuple(c for c in self.channels if c.enabled)

    def secret_values(self) -> list[str]:
        """Every secret in the configuration, for scrubbing logs and errors."""
        values = []
        database = self.service.database
        if isinstance(database, PostgresDatabase) and database.password is not None:
            values.append(database.password.reveal())
        for channel in self.channels:
            for field in fields(channel.settings):
                value = getattr(channel.settings, field.name)
                if isinstance(value, Secret) and value.reveal():
                    values.append(value.reveal())
        return values


def with_node(config: Config, node: str) -> Config:
    """The configuration with another node name (``serve --node``), checked as the key."""
    if not _NODE_NAME.fullmatch(node):
        raise ConfigError("--node must be a name of 1 to 63 letters, digits, '.', '_' or '-'",
                          file=str(config.path), key="service.node")
    return replace(config, service=replace(config.service, node=node))


def config_path(explicit: str | None) -> Path:
    """--config, else $BROADCASTER_CONFIG, else ./channels.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


class _StructureOnly(dict[str, str]):
    """The environment given when secrets are to be checked in form only."""


# Commands that need the file's structure but no credentials (users, audit,
# templates) check each secret reference's form and leave its value empty, so an
# administrator or the press office can run them without the service's secrets.
STRUCTURE_ONLY: Mapping[str, str] = _StructureOnly()


def load_config(path: Path, environ: Mapping[str, str] | None = None, *,
                resolve_secrets: bool = True) -> Config:
    """Read and validate a configuration file; raises ConfigError.

    With resolve_secrets=False, secret references are checked in form only and
    every Secret is empty.
    """
    environ = os.environ if environ is None else environ
    if not resolve_secrets:
        environ = STRUCTURE_ONLY
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "file not found — pass --config PATH or set BROADCASTER_CONFIG", file=name
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", file=name) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=name) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=name) from None
    return _parse(document, path.resolve(), environ)


def _parse(document: dict[str, Any], path: Path, environ: Mapping[str, str]) -> Config:
    from broadcaster.channels import KINDS  # the registry imports every channel module

    name = str(path)
    unknown = set(document) - {"service", "channel"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            "unknown top-level key; the file has [service] and [[channel]] tables", file=name,
            key=key,
        )
    service = _parse_service(document.get("service"), path, environ)
    channel_tables = document.get("channel", [])
    if not isinstance(channel_tables, list):
        raise ConfigError("write channels as [[channel]] tables", file=name, key="channel")
    channels: list[ChannelConfig] = []
    for index, table in enumerate(channel_tables):
        label = table.get("name") if isinstance(table, dict) else None
        channel_name = label if isinstance(label, str) and label else f"#{index + 1}"
        try:
            channel = _parse_channel(table, service, KINDS, path, environ)
        except ConfigProblem as problem:
            raise ConfigError(
                problem.message, file=name, channel=channel_name, key=problem.key
            ) from None
        if any(existing.name == channel.name for existing in channels):
            raise ConfigError(
                "duplicate channel name; every channel needs its own name",
                file=name, channel=channel.name, key="name",
            )
        channels.append(channel)
    return Config(path=path, service=service, channels=tuple(channels))


_SERVICE_DEFAULTS: dict[str, Any] = {
    "city": "Stadt",
    "info_url": "",
    "listen": "127.0.0.1:8080",
    "database": "broadcaster.db",
    "database_password": None,
    "templates": "templates",
    "exercise_banner": "+++ ÜBUNG +++",
    "default_language": "de",
    "timezone": "Europe/Berlin",
    "require_second_officer": [],
    "retention_days": 365,
    "log_format": "text",
    "node": None,
    "lease_seconds": 10,
    "expected_nodes": 1,
}


def _parse_service(table: Any, path: Path, environ: Mapping[str, str]) -> ServiceConfig:
    name = str(path)
    if table is None:
        raise ConfigError("missing [service] table (city, info_url, listen, database)", file=name)
    if not isinstance(table, dict):
        raise ConfigError("[service] must be a table", file=name, key="service")
    unknown = set(table) - set(_SERVICE_DEFAULTS)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"unknown key in [service]; known keys: {', '.join(sorted(_SERVICE_DEFAULTS))}",
            file=name, key=f"service.{key}",
        )
    values = {**_SERVICE_DEFAULTS, **table}

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, file=name, key=f"service.{key}")

    for key in ("city", "info_url", "listen", "database", "templates", "exercise_banner",
                "default_language", "timezone", "log_format"):
        if not isinstance(values[key], str):
            raise fail(key, f"must be a string, not {_toml_type(values[key])}")
    if not values["exercise_banner"].strip():
        raise fail("exercise_banner", "must not be empty: exercises must be unmistakable")
    if values["info_url"] and not _is_http_url(values["info_url"]):
        raise fail("info_url", "must be an http:// or https:// address")
    try:
        ZoneInfo(values["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise fail("timezone", "unknown time zone; use a name like Europe/Berlin") from None
    if values["log_format"] not in ("text", "json"):
        raise fail("log_format", 'must be "text" or "json"')
    modes = values["require_second_officer"]
    if not isinstance(modes, list) or any(m != "live" for m in modes):
        raise fail("require_second_officer",
                   'must be ["live"] or [] (exercise alerts are never held)')
    retention = values["retention_days"]
    if not isinstance(retention, int) or isinstance(retention, bool) or retention < 1:
        raise fail("retention_days", "must be a whole number of days, at least 1")
    try:
        listen = _parse_listen(values["listen"])
    except ValueError as exc:
        raise fail("listen", str(exc)) from None
    node = values["node"] if values["node"] is not None else socket.gethostname()
    if not isinstance(node, str) or not _NODE_NAME.fullmatch(node):
        raise fail("node", "must be a name of 1 to 63 letters, digits, '.', '_' or '-' "
                   "(e.g. \"rz1-a\")")
    lease = values["lease_seconds"]
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 2 <= lease <= 300:
        raise fail("lease_seconds", "must be a number of seconds from 2 to 300")
    expected = values["expected_nodes"]
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 1:
        raise fail("expected_nodes", "must be a whole number, at least 1")
    database = _parse_database(values, path, environ)
    if expected > 1 and not isinstance(database, PostgresDatabase):
        raise fail("expected_nodes", "several nodes need a PostgreSQL ledger; with a SQLite "
                   "file one daemon runs, so leave expected_nodes at 1")
    return ServiceConfig(
        city=values["city"],
        info_url=values["info_url"],
        listen=listen,
        database=database,
        templates=_relative_to(path, values["templates"]),
        exercise_banner=values["exercise_banner"],
        default_language=values["default_language"],
        timezone=values["timezone"],
        require_second_officer=tuple(modes),
        retention_days=retention,
        log_format=values["log_format"],
        node=node,
        lease_seconds=float(lease),
        expected_nodes=expected,
    )


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,63}")


def postgres_uri_problem(value: str) -> str | None:
    """What is wrong with a postgresql:// URI for the ledger, or None."""
    from psycopg.conninfo import conninfo_to_dict  # only when PostgreSQL is configured

    try:
        params = conninfo_to_dict(value)
    except Exception as exc:  # psycopg.ProgrammingError: libpq could not parse it
        reason = str(exc).splitlines()[0] if str(exc) else "libpq cannot parse it"
        return (f"not a valid PostgreSQL URI ({reason}); write it like "
                '"postgresql://broadcaster@db1,db2/broadcaster?target_session_attrs=read-write"')
    if "password" in params:
        return ("the URI contains a password; remove it and set database_password = "
                '{ file = "db_password" } (or { env = … }, or use .pgpass)')
    return None


def _parse_database(values: Mapping[str, Any], path: Path, environ: Mapping[str, str]
                    ) -> Path | PostgresDatabase:
    """A file path (SQLite) or a postgresql:// URI and its password reference."""
    name = str(path)
    value, password = values["database"], values["database_password"]
    if not value.startswith(POSTGRES_SCHEMES):
        if password is not None:
            raise ConfigError("only a postgresql:// database takes a password; remove it or "
                              "set database to a postgresql:// URI", file=name,
                              key="service.database_password")
        return _relative_to(path, value)
    uri_problem = postgres_uri_problem(value)
    if uri_problem is not None:
        raise ConfigError(uri_problem, file=name, key="service.database")
    if password is None:
        return PostgresDatabase(uri=value, password=None)
    key = "service.database_password"
    try:
        # In form only for commands without the service's secrets (never empty otherwise).
        secret = resolve_secret("database_password", password, path, environ)
    except ConfigProblem as problem:
        raise ConfigError(problem.message, file=name, key=key) from None
    if environ is not STRUCTURE_ONLY:
        return PostgresDatabase(uri=value, password=secret)
    # Such a command may still open the ledger (users, audit): the password is the
    # database's own credential, so read it for real, and complain only on use.
    try:
        real = resolve_secret("database_password", password, path, os.environ)
    except ConfigProblem as problem:
        return PostgresDatabase(uri=value, password=None, password_problem=ConfigError(
            problem.message, file=name, key=key))
    return PostgresDatabase(uri=value, password=real)


def _parse_listen(value: str) -> Listen:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError('must be "HOST:PORT", e.g. "127.0.0.1:8080" (port 0: any free port)')
    return Listen(host=host.strip("[]"), port=int(port))


def _relative_to(config_file: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else config_file.parent / candidate


_COMMON_KEYS = {
    "name", "kind", "languages", "exercise", "timeout", "give_up_after", "on_unknown",
    "rate", "max_in_flight", "enabled", "health_interval",
}


def _parse_channel(
    table: Any,
    service: ServiceConfig,
    kinds: Mapping[str, Any],
    path: Path,
    environ: Mapping[str, str],
) -> ChannelConfig:
    if not isinstance(table, dict):
        raise ConfigProblem(None, "each [[channel]] must be a table")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigProblem("name", "every channel needs a name (used in the API, metrics, logs)")
    if not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ConfigProblem("name", "use letters, digits, '-' and '_' only")
    kind_name = table.get("kind")
    if not isinstance(kind_name, str) or kind_name not in kinds:
        raise ConfigProblem(
            "kind", f"unknown kind {kind_name!r}; known kinds: {', '.join(sorted(kinds))}"
        )
    kind = kinds[kind_name]
    own_keys = {f.name for f in fields(kind.config_class)}
    unknown = set(table) - _COMMON_KEYS - own_keys
    if unknown:
        key = sorted(unknown)[0]
        known = ", ".join(sorted(_COMMON_KEYS | own_keys))
        raise ConfigProblem(key, f"unknown key for kind {kind_name!r}; known keys: {known}")

    common = {key: table[key] for key in _COMMON_KEYS & set(table)}
    languages = common.get("languages", [service.default_language])
    if (not isinstance(languages, list) or not languages
            or not all(isinstance(x, str) and x for x in languages)):
        raise ConfigProblem("languages", 'must be a list of language codes, e.g. ["de"]')
    if kind.text_form == "short" and len(languages) != 1:
        raise ConfigProblem(
            "languages", "a short-form channel posts one language; add a second channel "
            "for the other language",
        )
    on_unknown = common.get("on_unknown", kind.on_unknown.value)
    if on_unknown not in ("retry", "hold"):
        raise ConfigProblem("on_unknown", 'must be "retry" or "hold"')
    settings = build_dataclass(
        kind.config_class, {k: v for k, v in table.items() if k in own_keys}, path, environ
    )
    return ChannelConfig(
        name=name,
        kind=kind_name,
        languages=tuple(languages),
        exercise=_typed(common, "exercise", bool, False),
        timeout=_positive(common, "timeout", 10.0),
        give_up_after=_positive(common, "give_up_after", 3600.0),
        on_unknown=on_unknown,
        rate=_positive(common, "rate", kind.rate),
        max_in_flight=int(_positive(common, "max_in_flight", kind.max_in_flight, whole=True)),
        enabled=_typed(common, "enabled", bool, True),
        health_interval=_positive(common, "health_interval", 300.0),
        settings=settings,
    )


T = TypeVar("T")


def _typed(table: Mapping[str, Any], key: str, kind: type[T], default: T) -> T:
    value = table.get(key, default)
    if not isinstance(value, kind):
        raise ConfigProblem(key, f"must be a {_toml_type_name(kind)}, not {_toml_type(value)}")
    return value


def _positive(table: Mapping[str, Any], key: str, default: float, whole: bool = False) -> float:
    value = table.get(key, default)
    ok_types = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types) or value <= 0:
        what = "a positive whole number" if whole else "a positive number"
        raise ConfigProblem(key, f"must be {what}, not {value!r}")
    return float(value)


def build_dataclass(
    cls: type[T], table: Mapping[str, Any], path: Path, environ: Mapping[str, str]
) -> T:
    """Fill a kind's frozen config dataclass from its TOML keys, checking each type.

    Supported field types: str, int, float, bool, list[str] / tuple[str, ...],
    Literal[...], Secret, and any of these `| None`. A class may add a
    ``validate()`` method that raises ConfigProblem for cross-field rules.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in fields(cls):  # type: ignore[arg-type]
        if field.name in table:
            values[field.name] = _convert(field.name, hints[field.name], table[field.name],
                                          path, environ)
        elif field.default is MISSING and field.default_factory is MISSING:
            raise ConfigProblem(field.name, "is required for this kind of channel")
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def _convert(key: str, hint: Any, value: Any, path: Path, environ: Mapping[str, str]) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(key, options[0], value, path, environ)
    if hint is Secret:
        return resolve_secret(key, value, path, environ)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigProblem(key, f"must be one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigProblem(key, "must be a list of strings")
        return tuple(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigProblem(key, f"must be a number, not {_toml_type(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigProblem(key, f"must be a whole number, not {_toml_type(value)}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ConfigProblem(key, f"must be a {_toml_type_name(hint)}, not {_toml_type(value)}")
        return value
    raise TypeError(f"unsupported config field type {hint!r} for {key}")


def resolve_secret(key: str, value: Any, path: Path, environ: Mapping[str, str]) -> Secret:
    """Resolve ``{ env = "NAME" }`` or ``{ file = "name" }``; a literal is refused."""
    if isinstance(value, str):
        raise ConfigProblem(
            key, 'a secret must not be written into the file; use { env = "NAME" } or '
            '{ file = "name" } (a systemd credential)',
        )
    if not isinstance(value, dict) or len(value) != 1 or not ({"env", "file"} & set(value)):
        raise ConfigProblem(key, 'write the secret as { env = "NAME" } or { file = "name" }')
    if "env" in value:
        variable = value["env"]
        if not isinstance(variable, str) or not variable:
            raise ConfigProblem(key, "env must name an environment variable")
        if environ is STRUCTURE_ONLY:
            return Secret("", f"env:{variable}")
        secret = environ.get(variable)
        if not secret:
            raise ConfigProblem(
                key, f"environment variable {variable} is not set; set it for the service "
                "(e.g. in an EnvironmentFile) or use { file = … }",
            )
        return Secret(secret, f"env:{variable}")
    filename = value["file"]
    if not isinstance(filename, str) or not filename:
        raise ConfigProblem(key, "file must name a credential file")
    if environ is STRUCTURE_ONLY:
        return Secret("", f"file:{filename}")
    candidates = []
    if Path(filename).is_absolute():
        candidates.append(Path(filename))
    else:
        credentials = environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            candidates.append(Path(credentials) / filename)
        candidates.append(path.parent / filename)
    for candidate in candidates:
        try:
            secret = candidate.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigProblem(
                key, f"credential file {candidate} cannot be read ({reason}); check its "
                "owner and mode, or LoadCredential= in the unit",
            ) from None
        if not secret:
            raise ConfigProblem(key, f"credential file {candidate} is empty")
        return Secret(secret, f"file:{filename}")
    where = " or ".join(str(c) for c in candidates)
    raise ConfigProblem(
        key, f"credential file {filename!r} not found (looked in {where}); add it with "
        "LoadCredential= or create it",
    )


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (plain SMTP is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_http_url(key: str, value: str) -> None:
    """For kinds' validate(): an http(s) URL or a ConfigProblem naming the key."""
    if not _is_http_url(value):
        raise ConfigProblem(key, f"must be an http:// or https:// address, not {value!r}")


def _toml_type(value: Any) -> str:
    return _toml_type_name(type(value))


def _toml_type_name(kind: type) -> str:
    return {str: "string", bool: "boolean (true/false)", int: "integer", float: "number",
            list: "array", dict: "table"}.get(kind, kind.__name__)
