"""Line numbers for configuration issues: dotted key path -> line in the file.

The loader and the snapshot build report problems by key path
(``http.routers.api.service``); :func:`attach_lines` adds the line where that
key (or, when the key itself is absent, its nearest written parent) sits in
the file, so ``turnout check`` prints ``FILE:LINE: key.path: message``.

- YAML: PyYAML's composer gives every node its position; the map is exact.
- TOML: ``tomllib`` keeps no positions, so a small scanner reads table
  headers (``[a.b]``, ``[[a.b]]`` with their indexes), ``key = value`` lines,
  arrays and inline tables. Every path it records is then looked up in what
  ``tomllib`` parsed; if any is missing the scanner misread the file and the
  whole map is dropped: a line is left out rather than wrong.
- JSON: no lines.

Paths are spelled as the loader spells them: keys joined with dots, list
items as ``[N]``. Lookups try the path as written first, then its lower-cased
form (the loader matches field names case-insensitively, and the snapshot
names them canonically); a lower-cased form that two written paths share is
not used. Maps are cached per file (path, size, modification time).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor

if TYPE_CHECKING:
    from proxy.config.load import ConfigIssue

__all__ = ["LineMap", "attach_lines", "line_map", "toml_lines", "yaml_lines"]

Segment = str | int

# A syntax error's path ("line 3") already carries its line.
_SYNTAX = re.compile(r"^line \d+$")
# Where a path may be cut: before a ``.`` or a ``[``.
_CUT = re.compile(r"[.\[]")


@dataclasses.dataclass(frozen=True, slots=True)
class LineMap:
    """Dotted path -> 1-based line, as written and lower-cased."""

    exact: dict[str, int]
    lower: dict[str, int | None]

    @classmethod
    def of(cls, lines: dict[str, int]) -> LineMap:
        lower: dict[str, int | None] = {}
        for path, line in lines.items():
            key = path.lower()
            if key in lower and lower[key] != line:
                lower[key] = None  # two spellings, two places: not used
            else:
                lower[key] = line
        return cls(lines, lower)

    def find(self, path: str) -> tuple[int, int] | None:
        """``(line, depth)`` of ``path`` or of its longest known prefix; depth counts segments."""
        for prefix in _prefixes(path):
            line = self.exact.get(prefix)
            if line is None:
                line = self.lower.get(prefix.lower())
            if line is not None:
                return line, len(_CUT.findall(prefix)) + 1
        return None


_EMPTY = LineMap({}, {})


def _prefixes(path: str) -> list[str]:
    """``a.b[0].c`` -> ``["a.b[0].c", "a.b[0]", "a.b", "a"]``."""
    cuts = [match.start() for match in _CUT.finditer(path) if match.start() > 0]
    return [path, *(path[:cut] for cut in reversed(cuts))]


def _render(segments: Iterable[Segment]) -> str:
    text = ""
    for segment in segments:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text = f"{text}.{segment}" if text else segment
    return text


# --------------------------------------------------------------------------
# Attaching lines to issues
# --------------------------------------------------------------------------


def attach_lines(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    """The issues, with ``line`` filled in where the file that holds the key is known.

    ``issue.file`` may name a file, a directory (the file provider's
    ``directory``) or several of them joined with ``", "`` (``turnout check
    A B``). For a directory or a list, the issue is moved to the file that
    defines the resource (the first one, in the order they are merged, when
    several define it identically); when no file clearly does, the issue is
    left as it is.
    """
    files_of: dict[str, list[str]] = {}
    out: list[ConfigIssue] = []
    for issue in issues:
        if issue.line is not None or not issue.path or _SYNTAX.match(issue.path):
            out.append(issue)
            continue
        if issue.file not in files_of:
            files_of[issue.file] = _files_of(issue.file)
        files = files_of[issue.file]
        if files == [issue.file]:
            found = line_map(issue.file).find(issue.path)
            if found is not None:
                issue = dataclasses.replace(issue, line=found[0])
        elif files:
            issue = _in_one_of(issue, files)
        out.append(issue)
    return out


def _in_one_of(issue: ConfigIssue, files: list[str]) -> ConfigIssue:
    # A key below the resource (``http.routers.NAME``) must be found for the
    # file to be the one that defines it.
    needed = min(3, len(_CUT.findall(issue.path)) + 1)
    best: tuple[int, int, str] | None = None  # (depth, line, file)
    for file in files:
        found = line_map(file).find(issue.path)
        if found is None or found[1] < needed:
            continue
        line, depth = found
        if best is None or depth > best[0]:
            best = (depth, line, file)
    if best is None:
        return issue
    return dataclasses.replace(issue, file=best[2], line=best[1])


def _files_of(source: str) -> list[str]:
    from proxy.config.load import CONFIG_EXTENSIONS, _config_files

    if not source:
        return []
    path = Path(source)
    try:
        if path.is_file():
            return [source] if path.suffix.lower() in CONFIG_EXTENSIONS else []
        if path.is_dir():
            return [str(file) for file in _config_files(path)]
    except OSError:
        return []
    if ", " in source:
        files: list[str] = []
        for part in source.split(", "):
            files.extend(file for file in _files_of(part) if file not in files)
        return files
    return []


def line_map(file: str) -> LineMap:
    """The map of one file, cached while the file is unchanged; empty if unreadable."""
    try:
        stat = os.stat(file)
    except OSError:
        return _EMPTY
    return _cached_map(file, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _cached_map(file: str, size: int, mtime_ns: int) -> LineMap:
    suffix = Path(file).suffix.lower()
    try:
        text = Path(file).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return _EMPTY
    if suffix == ".toml":
        return LineMap.of(toml_lines(text))
    if suffix in (".yaml", ".yml"):
        return LineMap.of(yaml_lines(text))
    return _EMPTY


# --------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------

# libyaml's parser when PyYAML has it: the same nodes and marks, ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


def yaml_lines(text: str) -> dict[str, int]:
    """Path -> line of every key and list item of a YAML document; empty if it does not parse."""
    try:
        root = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        _walk_yaml(root, [], lines, set(), override=True, keys=SafeConstructor())
    return lines


def _walk_yaml(
    node: yaml.Node,
    path: list[Segment],
    lines: dict[str, int],
    active: set[int],
    *,
    override: bool,
    keys: SafeConstructor,
) -> None:
    if id(node) in active or len(path) > 64:
        return  # a recursive alias
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            merged: list[yaml.Node] = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    if isinstance(value_node, yaml.SequenceNode):
                        merged.extend(value_node.value)
                    else:
                        merged.append(value_node)
                    continue
                key = _yaml_key(key_node, keys)
                if key is None:
                    continue
                child = [*path, key]
                _record(lines, child, key_node.start_mark.line + 1, override=override)
                _walk_yaml(value_node, child, lines, active, override=override, keys=keys)
            # ``<<: *defaults``: keys written in the mapping win over merged ones.
            for source in merged:
                if isinstance(source, yaml.MappingNode):
                    _walk_yaml(source, path, lines, active, override=False, keys=keys)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = [*path, index]
                _record(lines, child, item.start_mark.line + 1, override=override)
                _walk_yaml(item, child, lines, active, override=override, keys=keys)
    finally:
        active.discard(id(node))


def _yaml_key(node: yaml.Node, keys: SafeConstructor) -> str | None:
    """The key as the loader names it: ``str()`` of the constructed scalar."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag == _STR_TAG:
        return node.value
    try:
        value = keys.construct_object(node, deep=True)
    except yaml.YAMLError:
        return None
    return str(value)


def _record(lines: dict[str, int], path: list[Segment], line: int, *, override: bool) -> None:
    key = _render(path)
    if override:
        lines[key] = line
    else:
        lines.setdefault(key, line)


# --------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------


def toml_lines(text: str) -> dict[str, int]:
    """Path -> line of every table, key and array item of a TOML document.

    Empty if the text does not parse or the scan disagrees with ``tomllib``.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
    scanner = _TomlScanner(text)
    try:
        scanner.run()
    except (_ScanError, IndexError, ValueError, tomllib.TOMLDecodeError):
        return {}
    lines = {_render(path): line for path, line in scanner.lines.items()}
    if not all(_exists(data, path) for path in scanner.lines):
        return {}
    return lines


def _exists(data: Any, path: tuple[Segment, ...]) -> bool:
    for segment in path:
        if isinstance(segment, int):
            if not isinstance(data, list) or segment >= len(data):
                return False
        elif not isinstance(data, dict) or segment not in data:
            return False
        data = data[segment]
    return True


class _ScanError(Exception):
    pass


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}#\r\n]")
_BLANK = re.compile(r"(?:[ \t]|#[^\n]*)*")
_BLANK_LINES = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\n]*'")


class _TomlScanner:
    """Positions of a TOML document already known to be valid."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[tuple[Segment, ...], int] = {}
        # Concrete path of each array of tables -> index of its last item.
        self.arrays: dict[tuple[Segment, ...], int] = {}

    # -- reading -----------------------------------------------------------

    def peek(self, count: int = 1) -> str:
        return self.text[self.pos : self.pos + count]

    def advance(self, count: int = 1) -> str:
        chunk = self.text[self.pos : self.pos + count]
        self.line += chunk.count("\n")
        self.pos += count
        return chunk

    def skip_blank(self, *, newlines: bool) -> None:
        """Spaces, tabs, comments and (with ``newlines``) line ends."""
        blank = _BLANK_LINES if newlines else _BLANK
        match = blank.match(self.text, self.pos)
        if match is not None and match.end() > self.pos:
            self.advance(match.end() - self.pos)

    def expect(self, token: str) -> None:
        if self.peek(len(token)) != token:
            raise _ScanError(f"expected {token!r} at line {self.line}")
        self.advance(len(token))

    # -- document ----------------------------------------------------------

    def run(self) -> None:
        table: tuple[Segment, ...] = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            line = self.line
            if self.peek(2) == "[[":
                self.advance(2)
                keys = self.keys()
                self.expect("]]")
                table = self.array_table(keys, line)
            elif self.peek() == "[":
                self.advance()
                keys = self.keys()
                self.expect("]")
                table = self.table(keys, line)
            else:
                self.key_value(table)
            self.skip_blank(newlines=False)
            if self.pos < len(self.text) and self.peek() not in "\r\n":
                raise _ScanError(f"unexpected text at line {self.line}")

    def resolve(self, keys: list[str]) -> tuple[Segment, ...]:
        """Header keys -> concrete path, through the last item of each array of tables."""
        path: tuple[Segment, ...] = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path])
        return path

    def table(self, keys: list[str], line: int) -> tuple[Segment, ...]:
        parent = self.resolve(keys[:-1])
        self.note_parents(keys[:-1], line)
        path = (*parent, keys[-1])
        self.lines[path] = line
        return path

    def array_table(self, keys: list[str], line: int) -> tuple[Segment, ...]:
        parent = self.resolve(keys[:-1])
        self.note_parents(keys[:-1], line)
        array = (*parent, keys[-1])
        index = self.arrays.get(array, -1) + 1
        self.arrays[array] = index
        self.lines.setdefault(array, line)
        path = (*array, index)
        self.lines[path] = line
        return path

    def note_parents(self, keys: list[str], line: int) -> None:
        for count in range(1, len(keys) + 1):
            self.lines.setdefault(self.resolve(keys[:count]), line)

    def key_value(self, base: tuple[Segment, ...]) -> None:
        line = self.line
        keys = self.keys()
        self.skip_blank(newlines=False)
        self.expect("=")
        self.skip_blank(newlines=False)
        path = base
        for key in keys[:-1]:
            path = (*path, key)
            self.lines.setdefault(path, line)
        path = (*path, keys[-1])
        self.lines[path] = line
        self.value(path)

    # -- keys --------------------------------------------------------------

    def keys(self) -> list[str]:
        keys: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            keys.append(self.key())
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return keys
            self.advance()

    def key(self) -> str:
        char = self.peek()
        if char in "\"'":
            start = self.pos
            self.string()
            raw = self.text[start : self.pos]
            return tomllib.loads(f"k = {raw}")["k"]
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            raise _ScanError(f"expected a key at line {self.line}")
        self.advance(match.end() - self.pos)
        return match.group()

    # -- values ------------------------------------------------------------

    def value(self, path: tuple[Segment, ...]) -> None:
        char = self.peek()
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            match = _SCALAR_END.search(self.text, self.pos)
            end = len(self.text) if match is None else match.start()
            if end == self.pos:
                raise _ScanError(f"expected a value at line {self.line}")
            self.advance(end - self.pos)

    def string(self) -> None:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            self.advance(3)
            end = self.text.find(quote * 3, self.pos)
            while quote == '"' and end >= 0 and _escaped(self.text, end):
                end = self.text.find(quote * 3, end + 1)
            if end < 0:
                raise _ScanError("unterminated string")
            # Up to two quotes may close the content right before the delimiter.
            while self.text[end + 3 : end + 4] == quote:
                end += 1
            self.advance(end + 3 - self.pos)
            return
        match = (_BASIC if quote == '"' else _LITERAL).match(self.text, self.pos)
        if match is None:
            raise _ScanError(f"unterminated string at line {self.line}")
        self.advance(match.end() - self.pos)

    def array(self, path: tuple[Segment, ...]) -> None:
        self.expect("[")
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == "]":
                self.advance()
                return
            item = (*path, index)
            self.lines[item] = self.line
            self.value(item)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.advance()
                index += 1
            elif self.peek() != "]":
                raise _ScanError(f"expected ',' or ']' at line {self.line}")

    def inline_table(self, path: tuple[Segment, ...]) -> None:
        self.expect("{")
        self.skip_blank(newlines=False)
        if self.peek() == "}":
            self.advance()
            return
        while True:
            self.key_value(path)
            self.skip_blank(newlines=False)
            if self.peek() == "}":
                self.advance()
                return
            self.expect(",")


def _escaped(text: str, index: int) -> bool:
    """Whether the character at ``index`` follows an odd number of backslashes."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1
