"""Files -> Structs: formats, case-insensitive keys, error paths, directory merge."""

import json
import textwrap
from pathlib import Path

import pytest

from proxy.config.dynamic import DynamicConfig, RouterTLSConfig
from proxy.config.load import (
    ConfigError,
    ConfigIssue,
    decode_dynamic,
    decode_static,
    empty_dynamic,
    load_dynamic,
    load_dynamic_directory,
    load_static,
    read_raw,
)
from proxy.config.static import StaticConfig


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def issues_of(call: object, *args: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        call(*args)  # type: ignore[operator]
    return [str(issue) for issue in caught.value.issues]


# --------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------

TOML_DYNAMIC = """
[http.routers.api]
  rule = "Host(`example.com`)"
  service = "backend"
  entryPoints = ["web"]
  priority = 10

[[http.services.backend.loadBalancer.servers]]
  url = "http://127.0.0.1:8081"
  weight = 3

[http.services.backend.loadBalancer.healthCheck]
  path = "/health"
  interval = "10s"
"""

YAML_DYNAMIC = """
http:
  routers:
    api:
      rule: "Host(`example.com`)"
      service: backend
      entryPoints: [web]
      priority: 10
  services:
    backend:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:8081
            weight: 3
        healthCheck:
          path: /health
          interval: 10s
"""

JSON_DYNAMIC = {
    "http": {
        "routers": {
            "api": {
                "rule": "Host(`example.com`)",
                "service": "backend",
                "entryPoints": ["web"],
                "priority": 10,
            }
        },
        "services": {
            "backend": {
                "loadBalancer": {
                    "servers": [{"url": "http://127.0.0.1:8081", "weight": 3}],
                    "healthCheck": {"path": "/health", "interval": "10s"},
                }
            }
        },
    }
}


def test_every_format_gives_the_same_configuration(tmp_path: Path) -> None:
    configs = [
        load_dynamic(write(tmp_path, "a.toml", TOML_DYNAMIC)),
        load_dynamic(write(tmp_path, "b.yaml", YAML_DYNAMIC)),
        load_dynamic(write(tmp_path, "c.yml", YAML_DYNAMIC)),
        load_dynamic(write(tmp_path, "d.json", json.dumps(JSON_DYNAMIC))),
    ]
    assert configs[0] == configs[1] == configs[2] == configs[3]
    router = configs[0].http.routers["api"]
    assert router.rule == "Host(`example.com`)"
    assert router.entry_points == ["web"]
    assert router.priority == 10
    balancer = configs[0].http.services["backend"].load_balancer
    assert balancer is not None
    assert balancer.servers[0].url == "http://127.0.0.1:8081"
    assert balancer.servers[0].weight == 3
    assert balancer.health_check is not None
    assert balancer.health_check.interval == 10.0
    # Defaults of a section that is present but partial.
    assert balancer.health_check.timeout == 5.0
    assert balancer.pass_host_header is True


def test_extension_is_matched_case_insensitively(tmp_path: Path) -> None:
    config = load_dynamic(write(tmp_path, "conf.TOML", TOML_DYNAMIC))
    assert "api" in config.http.routers


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.toml", ""),
        ("empty.yaml", ""),
        ("empty.yml", "# only a comment\n"),
        ("empty.json", "  \n"),
        ("null.yaml", "~\n"),
    ],
)
def test_an_empty_file_is_an_empty_configuration(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert load_dynamic(path) == empty_dynamic()
    assert load_static(path) == StaticConfig()


def test_empty_dynamic_has_empty_maps() -> None:
    config = empty_dynamic()
    assert config == DynamicConfig()
    assert config.http.routers == {}
    assert config.tcp.services == {}
    assert config.udp.routers == {}
    assert config.tls.certificates == []


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "conf.toml", "[http]\nrouters = {}\nbroken line\n")
    found = issues_of(load_dynamic, tmp_path / "conf.toml")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'conf.toml'}: line 3: ")
    assert "(column" in found[0]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "conf.yaml", "http:\n  routers: [a\n  b: c\n")
    found = issues_of(load_dynamic, tmp_path / "conf.yaml")
    assert len(found) == 1
    assert ": line " in found[0]


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "conf.json", '{\n  "http": {\n    "routers": oops\n  }\n}\n')
    assert issues_of(load_dynamic, tmp_path / "conf.json") == [
        f"{tmp_path / 'conf.json'}: line 3: Expecting value (column 16)"
    ]


def test_top_level_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path, "conf.yaml", "- a\n- b\n")
    assert issues_of(load_dynamic, tmp_path / "conf.yaml") == [
        f"{tmp_path / 'conf.yaml'}: the top level must be a table of keys, got a list"
    ]


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    write(tmp_path, "conf.ini", "[http]\n")
    assert issues_of(load_dynamic, tmp_path / "conf.ini") == [
        f"{tmp_path / 'conf.ini'}: unsupported file type '.ini'; "
        "expected .toml, .yaml, .yml or .json"
    ]
    missing = tmp_path / "missing.toml"
    assert issues_of(load_static, missing) == [f"{missing}: cannot read: No such file or directory"]


def test_read_raw_returns_plain_data(tmp_path: Path) -> None:
    path = write(tmp_path, "conf.toml", TOML_DYNAMIC)
    raw = read_raw(path)
    assert raw["http"]["routers"]["api"]["priority"] == 10


# --------------------------------------------------------------------------
# Keys: case, unknown, top level
# --------------------------------------------------------------------------


def test_keys_match_case_insensitively_and_user_names_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.toml",
        """
        [HTTP.Routers.MyRouter]
          RULE = "PathPrefix(`/`)"
          entrypoints = ["Web"]
          Middlewares = ["Secure-Headers"]
        [http.middlewares.Secure-Headers.Headers]
          [http.middlewares.Secure-Headers.Headers.CustomRequestHeaders]
            X-Custom-Header = "Value"
            x-lower = "v"
          [http.middlewares.Secure-Headers.Headers.customresponseheaders]
            X-Powered-By = ""
        [http.services.Back.LOADBALANCER]
          PassHostHeader = false
          [[http.services.Back.loadbalancer.Servers]]
            URL = "http://127.0.0.1:9000"
        """,
    )
    config = load_dynamic(path)
    # ``HTTP`` and ``http`` (``LOADBALANCER``, ``loadbalancer``) are one table,
    # as in Traefik.
    assert list(config.http.routers) == ["MyRouter"]
    router = config.http.routers["MyRouter"]
    assert router.rule == "PathPrefix(`/`)"
    assert router.entry_points == ["Web"]
    assert router.middlewares == ["Secure-Headers"]
    headers = config.http.middlewares["Secure-Headers"].headers
    assert headers is not None
    assert headers.custom_request_headers == {"X-Custom-Header": "Value", "x-lower": "v"}
    # An empty value means "remove this header": it must survive decoding.
    assert headers.custom_response_headers == {"X-Powered-By": ""}
    balancer = config.http.services["Back"].load_balancer
    assert balancer is not None
    assert balancer.pass_host_header is False
    assert balancer.servers[0].url == "http://127.0.0.1:9000"


def test_static_keys_match_case_insensitively(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "static.yaml",
        """
        EntryPoints:
          Web:
            ADDRESS: ":8000"
            transport:
              lifecycle:
                gracetimeout: 3s
        Log:
          Level: debug
        """,
    )
    config = load_static(path)
    assert config.entry_points["Web"].address == ":8000"
    assert config.entry_points["Web"].transport.life_cycle.grace_time_out == 3.0
    assert config.log.level == "debug"


def test_unknown_key_message_names_the_path_and_suggests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path,
        "conf.toml",
        """
        [http.routers.api]
          rul = "Host(`a`)"
          service = "s"
        """,
    )
    monkeypatch.chdir(tmp_path)
    # The file is named as the user gave it: relative stays relative.
    assert issues_of(load_dynamic, "conf.toml") == [
        "conf.toml:2: http.routers.api.rul: unknown key; did you mean 'rule'?"
    ]


def test_unknown_key_keeps_the_user_spelling_of_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "HTTP:\n  Routers:\n    r:\n      Servise: s\n")
    assert issues_of(load_dynamic, path) == [
        f"{path}:4: HTTP.Routers.r.Servise: unknown key; did you mean 'service'?"
    ]


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "http:\n  routers:\n    r:\n      zzzzzz: 1\n")
    assert issues_of(load_dynamic, path) == [f"{path}:4: http.routers.r.zzzzzz: unknown key"]


def test_every_error_is_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.yaml",
        """
        http:
          routers:
            a:
              rul: x
              priorty: 3
            b:
              priority: high
          services:
            s:
              loadBalancer:
                servers:
                  - url: http://127.0.0.1:1
                  - url: {host: x}
                    weight: heavy
                healthCheck:
                  interval: soon
        tcp:
          routers:
            t:
              tls:
                passthru: true
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_dynamic(path)
    issues = caught.value.issues
    assert all(isinstance(issue, ConfigIssue) and issue.file == str(path) for issue in issues)
    assert [(issue.path, issue.message) for issue in issues] == [
        ("http.routers.a.rul", "unknown key; did you mean 'rule'?"),
        ("http.routers.a.priorty", "unknown key; did you mean 'priority'?"),
        ("http.routers.b.priority", "expected an integer, got 'high'"),
        ("http.services.s.loadBalancer.servers[1].url", "expected a string, got a table"),
        ("http.services.s.loadBalancer.servers[1].weight", "expected an integer, got 'heavy'"),
        (
            "http.services.s.loadBalancer.healthCheck.interval",
            "invalid duration 'soon': expected a number of seconds or a Go duration "
            "such as '10s', '1m30s', '100ms', '1.5h' (units ns, us, ms, s, m, h)",
        ),
        ("tcp.routers.t.tls.passthru", "unknown key; did you mean 'passthrough'?"),
    ]
    # The exception text is one line per issue, in the CLI's format.
    assert str(caught.value).splitlines()[0] == (
        f"{path}:4: http.routers.a.rul: unknown key; did you mean 'rule'?"
    )


def test_type_errors_name_the_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.toml",
        """
        [http.routers.r]
          entryPoints = { web = true }
          tls = "yes please"
        [http.services.s.loadBalancer]
          servers = "http://127.0.0.1:1"
          passHostHeader = "maybe"
        """,
    )
    assert issues_of(load_dynamic, path) == [
        f"{path}:2: http.routers.r.entryPoints: expected a list, got a table",
        f"{path}:3: http.routers.r.tls: expected a table of keys, got 'yes please'",
        f"{path}:5: http.services.s.loadBalancer.servers: expected a list, got 'http://127.0.0.1:1'",
        f"{path}:6: http.services.s.loadBalancer.passHostHeader: "
        "expected true or false, got 'maybe'",
    ]


def test_duplicate_keys_differing_in_case_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{"http": {"routers": {"r": {"rule": "a", "Rule": "b"}}}}')
    assert issues_of(load_dynamic, path) == [
        f"{path}: http.routers.r.Rule: duplicate key (also given as 'rule')"
    ]


def test_dynamic_load_ignores_static_top_level_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed.toml",
        """
        [global]
          checkNewVersion = false
        [entryPoints.web]
          address = ":8000"
          bogus = 1
        [providers.file]
          filename = "mixed.toml"
        [http.routers.r]
          rule = "Path(`/`)"
          service = "s"
        """,
    )
    config = load_dynamic(path)
    assert list(config.http.routers) == ["r"]


def test_static_load_ignores_dynamic_top_level_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed.toml",
        """
        [entryPoints.web]
          address = ":8000"
        [http.routers.r]
          nonsense = "ignored by the static load"
        [TLS.options.default]
          minVersion = "VersionTLS13"
        """,
    )
    config = load_static(path)
    assert list(config.entry_points) == ["web"]


def test_unknown_top_level_keys_are_errors_with_suggestions(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "htp:\n  routers: {}\nentrypoint:\n  web: {}\nzzz: 1\n")
    expected = [
        f"{path}:1: htp: unknown key; did you mean 'http'?",
        f"{path}:3: entrypoint: unknown key; did you mean 'entryPoints'?",
        f"{path}:5: zzz: unknown key",
    ]
    assert issues_of(load_dynamic, path) == expected
    assert issues_of(load_static, path) == expected


# --------------------------------------------------------------------------
# Values read the way Traefik's paerser reads them
# --------------------------------------------------------------------------


def test_scalars_are_read_from_their_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.yaml",
        """
        http:
          routers:
            r:
              entryPoints: "web, websecure"
              priority: "5"
              tls: true
            plain:
              rule: Path(`/`)
              tls: false
          middlewares:
            to-https:
              redirectScheme:
                scheme: https
                port: 443
                permanent: "true"
            rl:
              rateLimit:
                average: 100
                period: 1m
          services:
            s:
              loadBalancer:
                servers:
                  - url: http://127.0.0.1:1
                    weight: "2"
                passHostHeader: "false"
        """,
    )
    config = load_dynamic(path)
    router = config.http.routers["r"]
    assert router.entry_points == ["web", "websecure"]
    assert router.priority == 5
    # ``tls: true`` is the label form of an empty tls table.
    assert router.tls == RouterTLSConfig()
    assert config.http.routers["plain"].tls is None
    scheme = config.http.middlewares["to-https"].redirect_scheme
    assert scheme is not None
    assert scheme.port == "443"
    assert scheme.permanent is True
    rate = config.http.middlewares["rl"].rate_limit
    assert rate is not None
    assert (rate.average, rate.period, rate.burst) == (100, 60.0, 1)
    balancer = config.http.services["s"].load_balancer
    assert balancer is not None
    assert balancer.servers[0].weight == 2
    assert balancer.pass_host_header is False


def test_null_values_are_absent(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.yaml",
        """
        http:
          routers:
            r:
              rule: Path(`/`)
              priority: ~
              tls:
          services:
            s:
              loadBalancer:
                passHostHeader: null
        """,
    )
    config = load_dynamic(path)
    assert config.http.routers["r"].priority is None
    assert config.http.routers["r"].tls is None
    balancer = config.http.services["s"].load_balancer
    assert balancer is not None
    assert balancer.pass_host_header is True


def test_dotted_toml_keys_in_a_map_of_strings_are_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "static.toml",
        """
        [ocsp.responderOverrides]
          ocsp.example.com = "http://127.0.0.1:8080"
        """,
    )
    config = load_static(path)
    assert config.ocsp is not None
    assert config.ocsp.responder_overrides == {"ocsp.example.com": "http://127.0.0.1:8080"}


def test_an_empty_table_where_a_list_belongs_is_an_empty_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.toml",
        """
        [http.services.s.loadBalancer]
          [http.services.s.loadBalancer.servers]
        """,
    )
    balancer = load_dynamic(path).http.services["s"].load_balancer
    assert balancer is not None
    assert balancer.servers == []


def test_plugin_settings_are_kept_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.yaml",
        """
        http:
          middlewares:
            p:
              plugin:
                myPlugin:
                  SomeKey: [1, 2]
                  nested: {Deep: true}
        """,
    )
    middleware = load_dynamic(path).http.middlewares["p"]
    assert middleware.plugin == {"myPlugin": {"SomeKey": [1, 2], "nested": {"Deep": True}}}


def test_status_rewrites_keys_become_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.yaml",
        """
        http:
          middlewares:
            e:
              errors:
                status: ["500-599", 404]
                statusRewrites:
                  418: 404
                  "500-503": "500"
                service: err
        """,
    )
    errors = load_dynamic(path).http.middlewares["e"].errors
    assert errors is not None
    assert errors.status == ["500-599", "404"]
    assert errors.status_rewrites == {"418": 404, "500-503": 500}


# --------------------------------------------------------------------------
# Go templates
# --------------------------------------------------------------------------


def test_go_templates_are_refused_in_dynamic_files(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf.toml",
        """
        [http.routers]
        {{ range $i, $e := until 3 }}
          [http.routers.router{{ $e }}]
          service = "application"
        {{ end }}
        """,
    )
    assert issues_of(load_dynamic, path) == [f"{path}: line 2: Go templates are not supported"]


def test_a_static_file_may_hold_a_provider_template_value(tmp_path: Path) -> None:
    # Docker's defaultRule is a Go template Traefik evaluates per container,
    # not file templating: static files are never rendered.
    path = write(
        tmp_path,
        "static.toml",
        """
        [providers.docker]
          defaultRule = "Host(`{{ normalize .Name }}.docker.localhost`)"
        """,
    )
    docker = load_static(path).providers.docker
    assert docker is not None
    assert docker.default_rule == "Host(`{{ normalize .Name }}.docker.localhost`)"


# --------------------------------------------------------------------------
# Already-parsed data
# --------------------------------------------------------------------------


def test_decode_dynamic_and_static_take_parsed_data() -> None:
    config = decode_dynamic(
        {"http": {"routers": {"r": {"Rule": "Path(`/`)", "service": "s"}}}}, "redis"
    )
    assert config.http.routers["r"].rule == "Path(`/`)"
    assert decode_dynamic(None, "redis") == empty_dynamic()
    static = decode_static({"entryPoints": {"web": {"address": ":80"}}}, "cli")
    assert static.entry_points["web"].address == ":80"

    with pytest.raises(ConfigError) as caught:
        decode_dynamic({"http": {"routers": {"r": {"prio": 1}}}}, "redis")
    assert caught.value.issues == [
        ConfigIssue("redis", "http.routers.r.prio", "unknown key; did you mean 'priority'?")
    ]


def test_decode_reads_key_value_store_shapes() -> None:
    # What a KV provider builds from ``traefik/http/...`` keys: every value is
    # text and list items are numbered keys.
    raw = {
        "http": {
            "routers": {
                "r": {
                    "entryPoints": {"1": "websecure", "0": "web"},
                    "priority": "7",
                    "tls": "true",
                }
            },
            "services": {
                "s": {
                    "loadBalancer": {
                        "servers": {"0": {"url": "http://127.0.0.1:1", "weight": "2"}},
                        "passHostHeader": "false",
                    }
                }
            },
        }
    }
    config = decode_dynamic(raw, "redis")
    router = config.http.routers["r"]
    assert router.entry_points == ["web", "websecure"]
    assert router.priority == 7
    assert router.tls == RouterTLSConfig()
    balancer = config.http.services["s"].load_balancer
    assert balancer is not None
    assert balancer.servers[0].weight == 2
    assert balancer.pass_host_header is False


def test_names_are_text_even_when_yaml_reads_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "http:\n  routers:\n    404:\n      service: s\n")
    assert list(load_dynamic(path).http.routers) == ["404"]


def test_decode_does_not_modify_its_input() -> None:
    raw = {"HTTP": {"Routers": {"r": {"Rule": "Path(`/`)", "priority": None}}}}
    snapshot = json.dumps(raw, sort_keys=True)
    decode_dynamic(raw, "test")
    assert json.dumps(raw, sort_keys=True) == snapshot


def test_config_issue_text() -> None:
    assert str(ConfigIssue("a.toml", "http.routers.r", "bad")) == "a.toml: http.routers.r: bad"
    assert str(ConfigIssue("a.toml", "", "cannot read")) == "a.toml: cannot read"
    error = ConfigError([ConfigIssue("a", "x", "one"), ConfigIssue("b", "y", "two")])
    assert str(error) == "a: x: one\nb: y: two"


# --------------------------------------------------------------------------
# Directories
# --------------------------------------------------------------------------


def test_directory_files_are_merged_recursively(tmp_path: Path) -> None:
    write(
        tmp_path,
        "10-routers.toml",
        """
        [http.routers.a]
          rule = "Path(`/a`)"
          service = "s"
        """,
    )
    write(
        tmp_path,
        "sub/20-services.yaml",
        """
        http:
          services:
            s:
              loadBalancer:
                servers: [{url: "http://127.0.0.1:1"}]
        tcp:
          routers:
            t: {rule: "HostSNI(`*`)", service: ts}
        tls:
          certificates:
            - {certFile: a.crt, keyFile: a.key}
        """,
    )
    write(
        tmp_path,
        "30-more.json",
        json.dumps(
            {
                "http": {"routers": {"b": {"rule": "Path(`/b`)", "service": "s"}}},
                "tls": {"certificates": [{"certFile": "a.crt", "keyFile": "a.key"}]},
            }
        ),
    )
    write(tmp_path, "notes.txt", "not configuration")
    write(tmp_path, ".hidden.toml", "broken = = =")
    write(tmp_path, "..data/copy.toml", "broken = = =")
    config = load_dynamic_directory(tmp_path)
    assert sorted(config.http.routers) == ["a", "b"]
    assert list(config.http.services) == ["s"]
    assert list(config.tcp.routers) == ["t"]
    # The same certificate in two files is one certificate.
    assert len(config.tls.certificates) == 1


def test_directory_identical_duplicates_are_fine(tmp_path: Path) -> None:
    body = """
    [http.routers.r]
      rule = "Path(`/`)"
      service = "s"
    """
    write(tmp_path, "a.toml", body)
    write(
        tmp_path, "b.yaml", "http:\n  routers:\n    r:\n      service: s\n      Rule: Path(`/`)\n"
    )
    config = load_dynamic_directory(tmp_path)
    assert config.http.routers["r"].rule == "Path(`/`)"


def test_directory_conflicting_definitions_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", '[http.routers.r]\n  rule = "Path(`/a`)"\n')
    second = write(tmp_path, "b.toml", '[http.routers.r]\n  rule = "Path(`/b`)"\n')
    write(tmp_path, "c.toml", "[tcp.services.t.loadBalancer]\n")
    write(tmp_path, "d.toml", '[[tcp.services.t.loadBalancer.servers]]\n  address = "x:1"\n')
    found = issues_of(load_dynamic_directory, tmp_path)
    assert found == [
        f"{second}:1: http.routers.r: defined differently in {first}",
        f"{tmp_path / 'd.toml'}:1: tcp.services.t: defined differently in {tmp_path / 'c.toml'}",
    ]


def test_directory_reports_the_errors_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[http.routers.r]\n  rul = "x"\n')
    write(tmp_path, "b.yaml", "http:\n  servicez: {}\n")
    write(tmp_path, "c.toml", "{{ template }}\n")
    found = issues_of(load_dynamic_directory, tmp_path)
    assert found == [
        f"{tmp_path / 'a.toml'}:2: http.routers.r.rul: unknown key; did you mean 'rule'?",
        f"{tmp_path / 'b.yaml'}:2: http.servicez: unknown key; did you mean 'services'?",
        f"{tmp_path / 'c.toml'}: line 1: Go templates are not supported",
    ]


def test_directory_must_exist(tmp_path: Path) -> None:
    assert issues_of(load_dynamic_directory, tmp_path / "nope") == [
        f"{tmp_path / 'nope'}: not a directory"
    ]


def test_empty_directory_is_an_empty_configuration(tmp_path: Path) -> None:
    assert load_dynamic_directory(tmp_path) == empty_dynamic()
