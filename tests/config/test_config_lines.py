"""Line numbers in configuration errors: ``FILE:LINE: key.path: message`` (issue 5, point 4).

The checks run ``turnout check`` as a user does, on real files, and compare
whole error lines; the mapping itself (YAML nodes, the TOML scan) is tested
on the layouts it must handle and on those where it must stay silent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxy.config.lines import attach_lines, line_map, toml_lines, yaml_lines
from proxy.config.load import ConfigError, ConfigIssue, load_dynamic

TURNOUT = Path(sys.executable).parent / "turnout"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def check(tmp_path: Path, dynamic: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``turnout check`` with a static file whose file provider reads ``dynamic``."""
    static = tmp_path / "static.toml"
    kind = "directory" if dynamic.is_dir() else "filename"
    static.write_text(
        f'[entryPoints.web]\naddress = "127.0.0.1:0"\n[providers.file]\n{kind} = "{dynamic}"\n'
    )
    return subprocess.run(
        [str(TURNOUT), "check", "-c", str(static), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


GOOD_YAML = """
http:
  routers:
    api:
      rule: Host(`api.example`)
      service: app
      entryPoints:
        - web
  services:
    app:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:9001
          - url: http://127.0.0.1:9002
"""

GOOD_TOML = """
[http.routers.api]
  rule = "Host(`api.example`)"
  service = "app"
  entryPoints = ["web"]

[http.services.app.loadBalancer]
  [[http.services.app.loadBalancer.servers]]
    url = "http://127.0.0.1:9001"
  [[http.services.app.loadBalancer.servers]]
    url = "http://127.0.0.1:9002"
"""


def test_the_good_files_pass(tmp_path: Path) -> None:
    for name, text in (("d.yaml", GOOD_YAML), ("d.toml", GOOD_TOML)):
        result = check(tmp_path, write(tmp_path / name, text))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "configuration OK: 1 router, 1 service, 0 middlewares\n"


# -- turnout check: YAML ------------------------------------------------------------------


def test_yaml_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "d.yaml", GOOD_YAML.replace("service: app", "servise: app"))
    assert errors(check(tmp_path, path)) == [
        f"{path}:5: http.routers.api.servise: unknown key; did you mean 'service'?"
    ]


def test_yaml_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.yaml",
        GOOD_YAML.replace(
            "- url: http://127.0.0.1:9002",
            "- url: http://127.0.0.1:9002\n            weight: heavy",
        ),
    )
    assert errors(check(tmp_path, path)) == [
        f"{path}:14: http.services.app.loadBalancer.servers[1].weight: "
        "expected an integer, got 'heavy'"
    ]


def test_yaml_missing_service(tmp_path: Path) -> None:
    path = write(tmp_path / "d.yaml", GOOD_YAML.replace("service: app", "service: nope"))
    assert errors(check(tmp_path, path)) == [
        f"{path}:5: http.routers.api.service: unknown service 'nope'"
    ]


def test_yaml_missing_key_is_placed_on_its_parent(tmp_path: Path) -> None:
    # "a router needs a service": the key is absent, the router's own line is given.
    path = write(tmp_path / "d.yaml", GOOD_YAML.replace("      service: app\n", ""))
    assert errors(check(tmp_path, path)) == [
        f"{path}:3: http.routers.api.service: a router needs a service"
    ]


def test_yaml_list_item_and_key_case(tmp_path: Path) -> None:
    # Keys are matched case-insensitively: the snapshot names ``entryPoints``,
    # the file says ``EntryPoints``.
    path = write(
        tmp_path / "d.yaml",
        GOOD_YAML.replace(
            "entryPoints:\n        - web", "EntryPoints:\n        - web\n        - nowhere"
        ),
    )
    assert errors(check(tmp_path, path)) == [
        f"{path}:8: http.routers.api.entryPoints[1]: unknown entry point 'nowhere'"
    ]


# -- turnout check: TOML ------------------------------------------------------------------


def test_toml_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "d.toml", GOOD_TOML.replace("  rule =", "  rul ="))
    assert errors(check(tmp_path, path)) == [
        f"{path}:2: http.routers.api.rul: unknown key; did you mean 'rule'?"
    ]


def test_toml_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.toml",
        GOOD_TOML.replace(
            'url = "http://127.0.0.1:9002"', 'url = "http://127.0.0.1:9002"\n    weight = "heavy"'
        ),
    )
    assert errors(check(tmp_path, path)) == [
        f"{path}:11: http.services.app.loadBalancer.servers[1].weight: "
        "expected an integer, got 'heavy'"
    ]


def test_toml_missing_service(tmp_path: Path) -> None:
    path = write(tmp_path / "d.toml", GOOD_TOML.replace('service = "app"', 'service = "nope"'))
    assert errors(check(tmp_path, path)) == [
        f"{path}:3: http.routers.api.service: unknown service 'nope'"
    ]


def test_toml_bad_duration_in_the_static_file(tmp_path: Path) -> None:
    dynamic = write(tmp_path / "d.toml", GOOD_TOML)
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        "[entryPoints.web.transport.respondingTimeouts]\n"
        '# how long a client may take\nreadTimeout = "soon"\n'
        f'[providers.file]\nfilename = "{dynamic}"\n'
    )
    result = subprocess.run(
        [str(TURNOUT), "check", "-c", str(static)], capture_output=True, text=True, timeout=60
    )
    [line] = errors(result)
    assert line.startswith(
        f"{static}:5: entryPoints.web.transport.respondingTimeouts.readTimeout: invalid duration"
    )


def test_json_report_has_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.toml", GOOD_TOML.replace('service = "app"', 'service = "nope"'))
    result = check(tmp_path, path, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["errors"] == [
        {
            "file": str(path),
            "path": "http.routers.api.service",
            "line": 3,
            "message": "unknown service 'nope'",
        }
    ]


def test_a_directory_names_the_file_that_defines_the_resource(tmp_path: Path) -> None:
    folder = tmp_path / "dynamic"
    write(
        folder / "a-services.toml",
        GOOD_TOML.split("[http.services", 1)[0]
        .replace("[http.routers.api]", "[http.routers.other]")
        .replace('"Host(`api', '"Host(`other'),
    )
    write(
        folder / "b.toml",
        "[http.services.app.loadBalancer]\n"
        + GOOD_TOML.split("[http.services.app.loadBalancer]\n", 1)[1],
    )
    routers = write(
        folder / "sub" / "routers.yaml",
        GOOD_YAML.split("  services:", 1)[0].replace("service: app", "service: nope"),
    )
    assert errors(check(tmp_path, folder)) == [
        f"{routers}:5: http.routers.api.service: unknown service 'nope'"
    ]


def test_files_given_on_the_command_line(tmp_path: Path) -> None:
    services = write(
        tmp_path / "services.toml",
        "[http.services.app.loadBalancer]\n"
        + GOOD_TOML.split("[http.services.app.loadBalancer]\n", 1)[1],
    )
    routers = write(
        tmp_path / "routers.yaml",
        GOOD_YAML.split("  services:", 1)[0].replace("service: app", "service: nope"),
    )
    result = check(tmp_path, write(tmp_path / "unused.toml", ""), str(services), str(routers))
    assert errors(result) == [f"{routers}:5: http.routers.api.service: unknown service 'nope'"]


def test_syntax_errors_keep_their_form(tmp_path: Path) -> None:
    path = write(tmp_path / "d.toml", "[http.routers.api\n")
    assert errors(check(tmp_path, path)) == [
        f"{path}: line 1: Expected ']' at the end of a table declaration (column 18)"
    ]


def test_json_files_have_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('{"http": {"routers": {"api": {"rul": "x"}}}}')
    with pytest.raises(ConfigError) as caught:
        load_dynamic(path)
    [issue] = caught.value.issues
    assert issue.line is None
    assert str(issue) == f"{path}: http.routers.api.rul: unknown key; did you mean 'rule'?"


# -- the maps -------------------------------------------------------------------------------


def test_toml_layouts() -> None:
    text = textwrap.dedent(
        '''
        # comment
        [http]
          [http.routers."my.api"]
            rule = """
        Host(`a`)
        """
            entryPoints = [
              "web",   # a comment
              'websecure',
            ]
            tls = { certResolver = "x", domains = [ { main = "a.com" }, { main = "b.com" } ] }
        [[http.services.s.loadBalancer.servers]]
          url = "http://a"
        [[http.services.s.loadBalancer.servers]]
          url = "http://b"
        [http.services.s.loadBalancer.healthCheck]
          path = "/h"
        [http.middlewares.h.headers.customRequestHeaders]
          X-One = "1"
          ocsp.example.com = "z"
        [[tcp.services.t.weighted.services]]
          name = "x"
        [[tcp.services.t.weighted.services]]
          name = "y"
        '''
    ).lstrip("\n")
    lines = toml_lines(text)
    expected = {
        "http": 2,
        "http.routers.my.api": 3,
        "http.routers.my.api.rule": 4,
        "http.routers.my.api.entryPoints": 7,
        "http.routers.my.api.entryPoints[0]": 8,
        "http.routers.my.api.entryPoints[1]": 9,
        "http.routers.my.api.tls.domains[1].main": 11,
        "http.services.s.loadBalancer.servers": 12,
        "http.services.s.loadBalancer.servers[0]": 12,
        "http.services.s.loadBalancer.servers[0].url": 13,
        "http.services.s.loadBalancer.servers[1]": 14,
        "http.services.s.loadBalancer.servers[1].url": 15,
        "http.services.s.loadBalancer.healthCheck.path": 17,
        "http.middlewares.h.headers.customRequestHeaders.X-One": 19,
        "http.middlewares.h.headers.customRequestHeaders.ocsp.example.com": 20,
        "tcp.services.t.weighted.services[1].name": 24,
    }
    assert {path: lines.get(path) for path in expected} == expected


def test_toml_nested_arrays_of_tables() -> None:
    text = "[[a]]\nx = 1\n[[a.b]]\ny = 1\n[[a]]\n[[a.b]]\ny = 2\n[[a.b]]\ny = 3\n[a.c]\nz = 1\n"
    lines = toml_lines(text)
    assert lines["a[0].b[0].y"] == 4
    assert lines["a[1].b[0].y"] == 7
    assert lines["a[1].b[1].y"] == 9
    assert lines["a[1].c.z"] == 11
    assert "a[0].c" not in lines


def test_toml_scan_that_disagrees_with_the_parser_gives_no_lines(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from proxy.config import lines as module

    # A scanner that misreads the file (here: every key taken as "k") must
    # not produce lines: every path is checked against what tomllib read.
    monkeypatch.setattr(module._TomlScanner, "key", lambda self: (self.advance(1), "k")[1])
    assert toml_lines("a = 1\n") == {}
    assert toml_lines("not toml [") == {}


def test_yaml_keys_anchors_and_merges() -> None:
    text = textwrap.dedent(
        """
        defaults: &defaults
          service: app
          priority: 3
        http:
          routers:
            r:
              <<: *defaults
              priority: 5
              rule: Path(`/`)
            418: {}
        """
    ).lstrip("\n")
    lines = yaml_lines(text)
    assert lines["http.routers.r.priority"] == 8  # written in r: wins over the merged one
    assert lines["http.routers.r.service"] == 2  # from the anchor
    assert lines["http.routers.418"] == 10
    assert yaml_lines("a: [") == {}


def test_lookups() -> None:
    issue = ConfigIssue("f.toml", "http.routers.api.rule", "bad")
    assert str(issue) == "f.toml: http.routers.api.rule: bad"
    assert str(ConfigIssue("f.toml", "http.routers.api.rule", "bad", 7)) == (
        "f.toml:7: http.routers.api.rule: bad"
    )
    assert str(ConfigIssue("f.toml", "", "bad", 7)) == "f.toml:7: bad"


def test_two_spellings_of_one_key_are_not_guessed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.toml", '[HTTP.routers.a]\nrule = "x"\n[http.routers.b]\nrule = "y"\n'
    )
    found = line_map(str(path))
    assert found.find("http.routers.b.rule") == (4, 4)
    assert found.find("Http.routers.a.rule") == (2, 4)  # one written path lower-cases to it
    assert found.find("hTTP") is None  # HTTP (line 1) or http (line 3): not said


def test_maps_are_cached_per_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from proxy.config import lines as module

    path = write(tmp_path / "d.toml", GOOD_TOML)
    calls: list[str] = []
    real = module.toml_lines
    monkeypatch.setattr(module, "toml_lines", lambda text: calls.append(text) or real(text))
    module._cached_map.cache_clear()
    issues = [ConfigIssue(str(path), f"http.routers.api.{key}", "x") for key in ("a", "b", "c")]
    assert [issue.line for issue in attach_lines(issues)] == [1, 1, 1]
    assert len(calls) == 1
    # A changed file is read again.
    write(path, "# moved down\n" + GOOD_TOML.lstrip("\n"))
    assert [issue.line for issue in attach_lines(issues[:1])] == [2]
    assert len(calls) == 2


def test_issues_that_name_no_file_are_left_alone() -> None:
    issues = [
        ConfigIssue("redis://127.0.0.1:6379/traefik", "http.routers.a.rule", "bad"),
        ConfigIssue("", "http.routers.a.rule", "bad"),
    ]
    assert attach_lines(issues) == issues
