"""Configuration files -> Structs, with errors that name the key path.

Theory of operation
-------------------
1. A file is parsed by extension (TOML, YAML, JSON) into plain Python data.
   Dynamic files are refused if they contain Go template syntax (``{{``):
   Traefik's file provider renders every dynamic file as a Go template, and
   Turnout does not.
2. That raw tree is walked against the Struct types (:class:`_Normalizer`).
   The walk does what Traefik's paerser does while filling its Go structs:

   - keys match field names case-insensitively and are rewritten to their
     canonical spelling; keys of user-named maps (router names, header
     names...) are kept as written;
   - scalars are read the way paerser reads them, from their text: ``"42"``
     is an int, ``42`` is a string where a string is expected, ``"true"`` a
     bool; a string ``"a,b"`` where a list of scalars is expected is split on
     commas, and a table with numbered keys (``{"0": ..., "1": ...}``, as
     key-value stores spell lists) is a list; a ``null`` value is the same as
     an absent key; ``true`` where a table is expected means an empty table
     (the label form ``tls=true``); TOML dotted keys inside a map of strings
     (``ocsp.example.com = "..."``) are one name with dots;
   - every unknown key and every bad value becomes a :class:`ConfigIssue`, so
     one run reports all of them, each with its dotted path as the user wrote it.
3. Only when the walk found nothing wrong is the tree handed to
   ``msgspec.convert``, which builds the frozen Structs and their defaults.

Top-level keys of the other configuration kind are ignored (Traefik reads
both kinds from one file in many setups): a dynamic load skips ``entryPoints``,
``providers``... and a static load skips ``http``, ``tcp``, ``udp``, ``tls``.
"""

import difflib
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from proxy.config.durations import Duration, DurationError, dec_hook, parse_duration
from proxy.config.dynamic import (
    DynamicConfig,
    HTTPConfiguration,
    TCPConfiguration,
    TLSConfiguration,
    UDPConfiguration,
)
from proxy.config.lines import attach_lines
from proxy.config.static import StaticConfig, entry_point_problems

__all__ = [
    "CONFIG_EXTENSIONS",
    "ConfigError",
    "ConfigIssue",
    "check_static",
    "decode_dynamic",
    "decode_static",
    "decode_struct",
    "empty_dynamic",
    "load_dynamic",
    "load_dynamic_directory",
    "load_static",
    "merge_dynamic",
    "read_raw",
]

CONFIG_EXTENSIONS = (".toml", ".yaml", ".yml", ".json")

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in one file: ``FILE: key.path: message``, ``FILE:LINE: key.path: message``.

    ``path`` is the dotted key path as the user wrote it
    (``http.services.s.loadBalancer.servers[0].url``), ``"line N"`` for a
    syntax error, or ``""`` when the problem is the file as a whole. ``line``
    is the 1-based line of that key in ``file`` when it is known
    (:func:`proxy.config.lines.attach_lines`); a syntax error keeps its line
    in ``path``.
    """

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if not self.path:
            return f"{where}: {self.message}"
        return f"{where}: {self.path}: {self.message}"


class ConfigError(Exception):
    """Every problem found in a configuration, reported together."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def load_static(path: str | Path) -> StaticConfig:
    """Read a static configuration file (dynamic top-level sections are ignored)."""
    file = str(path)
    raw = read_raw(file)
    try:
        static = decode_static(raw, file)
    except ConfigError as error:
        raise ConfigError(attach_lines(error.issues)) from None
    return static


def check_static(static: StaticConfig, path: str | Path) -> None:
    """Refuse values that decode but cannot be used (before ``run`` or ``check``).

    Separate from ``load_static``: decoding accepts every file Traefik's own
    reference decodes (its placeholders, such as ``trustedIPs = ["foobar"]``,
    included), while Traefik refuses to start on them, as Turnout does here.
    """
    problems = entry_point_problems(static)
    if problems:
        issues = [ConfigIssue(str(path), key, message) for key, message in problems]
        raise ConfigError(attach_lines(issues))


def load_dynamic(path: str | Path) -> DynamicConfig:
    """Read one dynamic configuration file (static top-level sections are ignored)."""
    file = str(path)
    raw = read_raw(file, refuse_templates=True)
    try:
        return decode_dynamic(raw, file)
    except ConfigError as error:
        raise ConfigError(attach_lines(error.issues)) from None


def load_dynamic_directory(path: str | Path) -> DynamicConfig:
    """Read and merge every configuration file under a directory, recursively.

    Files are read in sorted path order; names starting with ``.`` are skipped
    (editor files, Kubernetes ConfigMap ``..data`` links). A resource defined
    in two files must be defined identically, or both files are named in an
    error. All problems of all files are reported together.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(path), "", "not a directory")])
    issues: list[ConfigIssue] = []
    loaded: list[tuple[str, DynamicConfig]] = []
    for file in _config_files(root):
        try:
            loaded.append((str(file), load_dynamic(file)))
        except ConfigError as error:
            issues.extend(error.issues)
    merged = _merge(loaded, issues)
    if issues:
        raise ConfigError(attach_lines(issues))
    return merged


def merge_dynamic(
    loaded: list[tuple[str, DynamicConfig]], issues: list[ConfigIssue]
) -> DynamicConfig:
    """Merge configurations read from several files, as a directory's are merged.

    A resource defined differently in two files is appended to ``issues``
    naming both files.
    """
    start = len(issues)
    merged = _merge(loaded, issues)
    issues[start:] = attach_lines(issues[start:])
    return merged


def decode_static(raw: object, file: str) -> StaticConfig:
    """Build a StaticConfig from already-parsed data (``file`` names it in errors)."""
    return _decode(raw, file, StaticConfig, ignored_top=_top_level_keys(DynamicConfig))


def decode_dynamic(raw: object, file: str) -> DynamicConfig:
    """Build a DynamicConfig from already-parsed data (``file`` names it in errors)."""
    return _decode(raw, file, DynamicConfig, ignored_top=_top_level_keys(StaticConfig))


def decode_struct(raw: object, file: str, struct: type[S]) -> S:
    """Build any Struct (a plugin's options) from parsed data, as configuration is read.

    Paths in the raised :class:`ConfigError` are relative to ``raw``.
    """
    return _decode(raw, file, struct, ignored_top={})


def empty_dynamic() -> DynamicConfig:
    """A dynamic configuration with nothing in it."""
    return DynamicConfig()


def read_raw(path: str | Path, *, refuse_templates: bool = False) -> dict[str, Any]:
    """Parse a configuration file into plain data, by extension.

    An empty file is an empty mapping. Raises :class:`ConfigError` for an
    unreadable file, a syntax error (with its line), an unknown extension, or
    (with ``refuse_templates``) Go template syntax.
    """
    file = str(path)
    suffix = Path(file).suffix.lower()
    if suffix not in CONFIG_EXTENSIONS:
        raise ConfigError(
            [
                ConfigIssue(
                    file,
                    "",
                    f"unsupported file type {suffix or '(none)'!r}; "
                    "expected .toml, .yaml, .yml or .json",
                )
            ]
        )
    try:
        text = Path(file).read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise ConfigError([ConfigIssue(file, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([ConfigIssue(file, "", f"not UTF-8 text: {error.reason}")]) from None
    if refuse_templates:
        line = _template_line(text)
        if line:
            raise ConfigError([ConfigIssue(file, f"line {line}", "Go templates are not supported")])
    if not text.strip():
        return {}
    data = _parse(text, suffix, file)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue(file, "", f"the top level must be a table of keys, got {_describe(data)}")]
        )
    return data


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _parse(text: str, suffix: str, file: str) -> object:
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_POSITION.search(message)
        if match is None:
            raise ConfigError([ConfigIssue(file, "", message)]) from None
        line, column = match.groups()
        message = f"{message[: match.start()]} (column {column})"
        raise ConfigError([ConfigIssue(file, f"line {line}", message)]) from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            [ConfigIssue(file, f"line {error.lineno}", f"{error.msg} (column {error.colno})")]
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        parts = [part for part in (error.context, error.problem) if part]
        message = ", ".join(parts) or "invalid YAML"
        if mark is None:
            raise ConfigError([ConfigIssue(file, "", message)]) from None
        message = f"{message} (column {mark.column + 1})"
        raise ConfigError([ConfigIssue(file, f"line {mark.line + 1}", message)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigIssue(file, "", f"invalid YAML: {error}")]) from None


def _template_line(text: str) -> int:
    """1-based line of the first ``{{``, or 0."""
    index = text.find("{{")
    if index < 0:
        return 0
    return text.count("\n", 0, index) + 1


def _config_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.extend(_config_files(entry))
        elif entry.suffix.lower() in CONFIG_EXTENSIONS and entry.is_file():
            found.append(entry)
    return found


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def _decode(raw: object, file: str, root: type[S], ignored_top: dict[str, str]) -> S:
    if raw is None:
        raw = {}
    normalizer = _Normalizer(file)
    tree = normalizer.root(raw, root, ignored_top)
    if normalizer.issues:
        raise ConfigError(normalizer.issues)
    try:
        return msgspec.convert(tree, root, strict=False, dec_hook=dec_hook)
    except msgspec.ValidationError as error:
        # The walk validates every value first, so this is a safety net: it
        # still reports the problem with a dotted path rather than a traceback.
        path, message = _split_msgspec_error(str(error))
        raise ConfigError([ConfigIssue(file, path, message)]) from None


_MSGSPEC_PATH = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def _split_msgspec_error(text: str) -> tuple[str, str]:
    """``"Expected `int`, got `str` - at `$.a.b[0].c`"`` -> ``("a.b[0].c", message)``."""
    match = _MSGSPEC_PATH.match(text)
    if match is None:
        return "", text
    return match.group("path").lstrip("."), match.group("message")


@cache
def _top_level_keys(struct: type[msgspec.Struct]) -> dict[str, str]:
    return {name.lower(): name for name in struct.__struct_encode_fields__}


@cache
def _struct_fields(struct: type[msgspec.Struct]) -> dict[str, tuple[str, Any]]:
    """Lower-cased key -> (canonical key, field type)."""
    return {
        field.encode_name.lower(): (field.encode_name, field.type)
        for field in msgspec.structs.fields(struct)
    }


def _is_struct(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _without_none(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


# Marks a value that is dropped, as Traefik drops null values.
_DROP: Any = object()

# strconv.ParseBool, which paerser uses for booleans.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[-+]?\d+")
_SCALARS = (str, int, float, bool, Duration)


class _Normalizer:
    """Walks raw data against Struct types; see the module docstring."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []

    def root(self, raw: object, struct: type[msgspec.Struct], ignored: dict[str, str]) -> Any:
        if not isinstance(raw, dict):
            self._issue("", f"the top level must be a table of keys, got {_describe(raw)}")
            return {}
        return self._struct(raw, struct, "", ignored)

    # -- dispatch ----------------------------------------------------------

    def _value(self, value: object, tp: Any, path: str) -> Any:
        if value is None:
            return _DROP
        tp = _without_none(tp)
        if tp is Any:
            return value
        if _is_struct(tp):
            return self._struct(value, tp, path, {})
        origin = typing.get_origin(tp)
        if origin is dict:
            return self._mapping(value, typing.get_args(tp)[1], path)
        if origin is list:
            return self._list(value, typing.get_args(tp)[0], path)
        return self._scalar(value, tp, path)

    # -- containers --------------------------------------------------------

    def _struct(
        self, value: object, struct: type[msgspec.Struct], path: str, ignored: dict[str, str]
    ) -> Any:
        if _parse_bool(value) is True:
            # paerser: "true" on a table (label form ``tls=true``) means an
            # empty table, "false" means absent.
            return {}
        if _parse_bool(value) is False:
            return _DROP
        if not isinstance(value, dict):
            self._issue(path, f"expected a table of keys, got {_describe(value)}")
            return _DROP
        fields = _struct_fields(struct)
        out: dict[str, Any] = {}
        written_as: dict[str, str] = {}
        for raw_key, item in value.items():
            key = str(raw_key)
            key_path = _join(path, key)
            found = fields.get(key.lower())
            if found is None:
                if key.lower() not in ignored:
                    known = [canonical for canonical, _ in fields.values()]
                    self._unknown(key_path, key, [*known, *ignored.values()])
                continue
            canonical, field_type = found
            normalized = self._value(item, field_type, key_path)
            if canonical in written_as:
                # paerser fills the same field from both spellings: tables
                # merge (``[HTTP.routers.a]`` + ``[http.services.b]``), two
                # values for one setting are ambiguous.
                merged = _merge_tables(out.get(canonical, _DROP), normalized)
                if merged is None:
                    first = written_as[canonical]
                    self._issue(key_path, f"duplicate key (also given as {first!r})")
                    continue
                normalized = merged
            written_as.setdefault(canonical, key)
            if normalized is not _DROP:
                out[canonical] = normalized
        return out

    def _mapping(self, value: object, value_type: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self._issue(path, f"expected a table of names, got {_describe(value)}")
            return _DROP
        if _without_none(value_type) in _SCALARS:
            # A TOML dotted key (``ocsp.example.com = "..."``) nests tables;
            # in a map of scalars it can only mean a name with dots in it.
            value = _flatten(value)
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            # YAML reads ``418: 404`` with an int key; names are text.
            key = str(raw_key)
            normalized = self._value(item, value_type, _join(path, key))
            if normalized is not _DROP:
                out[key] = normalized
        return out

    def _list(self, value: object, item_type: Any, path: str) -> Any:
        scalar_items = _without_none(item_type) in _SCALARS
        if scalar_items and isinstance(value, str):
            # paerser keeps lists of scalars as comma-joined text.
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif scalar_items and isinstance(value, (int, float, bool)):
            value = [value]
        if isinstance(value, dict) and all(str(key).isdigit() for key in value):
            # Key-value stores (Redis, etcd) number list items:
            # ``.../entryPoints/0 = web``. An empty TOML table where a list
            # belongs (``[http.services.s.loadBalancer.servers]``) is empty.
            value = [value[key] for key in sorted(value, key=lambda key: int(str(key)))]
        if not isinstance(value, list):
            self._issue(path, f"expected a list, got {_describe(value)}")
            return _DROP
        out: list[Any] = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if item is None:
                self._issue(item_path, "empty list item")
                continue
            normalized = self._value(item, item_type, item_path)
            if normalized is not _DROP:
                out.append(normalized)
        return out

    # -- scalars -----------------------------------------------------------

    def _scalar(self, value: object, tp: Any, path: str) -> Any:
        if isinstance(value, (dict, list)):
            expected = _SCALAR_NAMES.get(tp, "a value")
            self._issue(path, f"expected {expected}, got {_describe(value)}")
            return _DROP
        if tp is str:
            return _as_text(value)
        if tp is bool:
            parsed = _parse_bool(value)
            if parsed is None:
                self._issue(path, f"expected true or false, got {_describe(value)}")
                return _DROP
            return parsed
        if tp is int:
            parsed_int = _parse_int(value)
            if parsed_int is None:
                self._issue(path, f"expected an integer, got {_describe(value)}")
                return _DROP
            return parsed_int
        if tp is float:
            parsed_float = _parse_float(value)
            if parsed_float is None:
                self._issue(path, f"expected a number, got {_describe(value)}")
                return _DROP
            return parsed_float
        if tp is Duration:
            try:
                return parse_duration(value)
            except DurationError as error:
                self._issue(path, str(error))
                return _DROP
        return value

    # -- issues ------------------------------------------------------------

    def _issue(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, path, message))

    def _unknown(self, path: str, key: str, known: list[str]) -> None:
        by_lower = {name.lower(): name for name in known}
        close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
        if close:
            self._issue(path, f"unknown key; did you mean {by_lower[close[0]]!r}?")
        else:
            self._issue(path, "unknown key")


_SCALAR_NAMES: dict[Any, str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    Duration: "a duration",
}


def _merge_tables(first: Any, second: Any) -> Any:
    """Deep-merge two normalized tables; ``None`` if they set the same value."""
    if first is _DROP:
        return second
    if second is _DROP or first == second:
        return first
    if not (isinstance(first, dict) and isinstance(second, dict)):
        return None
    merged = dict(first)
    for key, value in second.items():
        if key in merged:
            both = _merge_tables(merged[key], value)
            if both is None:
                return None
            merged[key] = both
        else:
            merged[key] = value
    return merged


def _flatten(table: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for raw_key, item in table.items():
        key = f"{prefix}{raw_key}"
        if isinstance(item, dict):
            flat.update(_flatten(item, f"{key}."))
        else:
            flat[key] = item
    return flat


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        # Unquoted dates in TOML/YAML: give back the text the user wrote.
        return value.isoformat()
    return str(value)


def _parse_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _parse_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _parse_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------
# Directory merge
# --------------------------------------------------------------------------

# (section, attribute) of every user-named resource map in a DynamicConfig.
_RESOURCE_MAPS: tuple[tuple[str, str], ...] = (
    ("http", "routers"),
    ("http", "services"),
    ("http", "middlewares"),
    ("http", "servers_transports"),
    ("tcp", "routers"),
    ("tcp", "services"),
    ("tcp", "middlewares"),
    ("tcp", "servers_transports"),
    ("udp", "routers"),
    ("udp", "services"),
    ("tls", "options"),
    ("tls", "stores"),
)

_SECTION_TYPES: dict[str, type[msgspec.Struct]] = {
    "http": HTTPConfiguration,
    "tcp": TCPConfiguration,
    "udp": UDPConfiguration,
    "tls": TLSConfiguration,
}


def _merge(loaded: list[tuple[str, DynamicConfig]], issues: list[ConfigIssue]) -> DynamicConfig:
    maps: dict[tuple[str, str], dict[str, Any]] = {key: {} for key in _RESOURCE_MAPS}
    origin: dict[tuple[str, str, str], str] = {}
    certificates: list[Any] = []
    for file, config in loaded:
        for section, attr in _RESOURCE_MAPS:
            target = maps[(section, attr)]
            for name, resource in getattr(getattr(config, section), attr).items():
                previous = target.get(name)
                if previous is None:
                    target[name] = resource
                    origin[(section, attr, name)] = file
                elif previous != resource:
                    key = _encode_name(_SECTION_TYPES[section], attr)
                    issues.append(
                        ConfigIssue(
                            file,
                            f"{section}.{key}.{name}",
                            f"defined differently in {origin[(section, attr, name)]}",
                        )
                    )
        for certificate in config.tls.certificates:
            if certificate not in certificates:
                certificates.append(certificate)
    sections: dict[str, Any] = {}
    for section, struct in _SECTION_TYPES.items():
        values = {attr: maps[(sec, attr)] for sec, attr in _RESOURCE_MAPS if sec == section}
        if section == "tls":
            values["certificates"] = certificates
        sections[section] = struct(**values)
    return DynamicConfig(**sections)


def _encode_name(struct: type[msgspec.Struct], attr: str) -> str:
    index = struct.__struct_fields__.index(attr)
    return struct.__struct_encode_fields__[index]
