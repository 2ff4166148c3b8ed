"""Real Traefik v3 configuration files load unchanged.

The corpus is ``../shared/compat`` next to the repository (see its README):
Traefik's generated reference files, the file provider's fixtures and the
integration-test fixtures. Without it the tests skip, unless ``CI=true``.
"""

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError, load_dynamic, load_static
from proxy.config.static import parse_address

COMPAT = Path(__file__).resolve().parents[2].parent / "shared" / "compat"
TRAEFIK = COMPAT / "traefik"
REFERENCE = TRAEFIK / "docs" / "content" / "reference"
PROVIDER_FIXTURES = TRAEFIK / "pkg" / "provider" / "file" / "fixtures"
INTEGRATION_FIXTURES = TRAEFIK / "integration" / "fixtures"
EXTENSIONS = (".toml", ".yaml", ".yml", ".json")


def require_corpus() -> None:
    if TRAEFIK.is_dir():
        return
    reason = f"compatibility corpus not found at {COMPAT}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def corpus_files(root: Path) -> list[Any]:
    if not root.is_dir():
        return [pytest.param(None, id="corpus-missing")]
    files = sorted(p for p in root.rglob("*") if p.suffix in EXTENSIONS and p.is_file())
    return [pytest.param(path, id=str(path.relative_to(root))) for path in files]


def key_paths(tree: object, prefix: str = "") -> set[str]:
    """Every key path of a parsed file (list items share their list's path)."""
    paths: set[str] = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= key_paths(value, path)
    elif isinstance(tree, list):
        for item in tree:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def parse(path: Path) -> Any:
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text())
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------
# (a) Traefik's generated reference: every key
# --------------------------------------------------------------------------

REFERENCE_FILES = [
    pytest.param(kind, ext, id=f"{kind}-{ext}")
    for kind in ("static", "dynamic")
    for ext in ("yaml", "toml")
]


@pytest.mark.parametrize(("kind", "ext"), REFERENCE_FILES)
def test_reference_file_decodes_with_every_key_spelled_as_traefik_does(kind: str, ext: str) -> None:
    require_corpus()
    path = REFERENCE / f"{kind}-configuration" / f"file.{ext}"
    loader = load_static if kind == "static" else load_dynamic
    config = loader(path)
    # Keys match case-insensitively, so decoding alone would not catch a
    # field whose canonical spelling differs from Traefik's (``rootCas`` for
    # ``rootCAs``): encoding back must reproduce every key path as written.
    encoded = msgspec.to_builtins(config, enc_hook=float)
    missing = key_paths(parse(path)) - key_paths(encoded)
    assert not missing, f"keys not reproduced with Traefik's spelling: {sorted(missing)}"


def test_reference_values_reach_the_structs() -> None:
    require_corpus()
    static = load_static(REFERENCE / "static-configuration" / "file.yaml")
    entry_point = static.entry_points["EntryPoint0"]
    assert entry_point.transport.life_cycle.grace_time_out == 42.0
    assert entry_point.forwarded_headers.trusted_ips == ["foobar", "foobar"]
    assert static.providers.providers_throttle_duration == 42.0
    assert static.certificates_resolvers["CertificateResolver1"].tailscale is not None

    dynamic = load_dynamic(REFERENCE / "dynamic-configuration" / "file.toml")
    assert dynamic.http.routers["Router1"].priority == 42
    balancer = dynamic.http.services["Service03"].load_balancer
    assert balancer is not None
    assert balancer.servers[1].weight == 42
    assert balancer.health_check is not None
    assert balancer.health_check.interval == 42.0
    assert dynamic.http.middlewares["Middleware17"].plugin == {
        "PluginConf0": {"name0": "foobar", "name1": "foobar"},
        "PluginConf1": {"name0": "foobar", "name1": "foobar"},
    }
    assert dynamic.tls.stores["Store1"].default_generated_cert is not None


# --------------------------------------------------------------------------
# (b) The file provider's own fixtures
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_files(PROVIDER_FIXTURES))
def test_file_provider_fixture(path: Path | None) -> None:
    require_corpus()
    assert path is not None
    if path.name.startswith("template_"):
        # Go templates ({{ range }} ... {{ end }}) are refused, by design.
        with pytest.raises(ConfigError) as caught:
            load_dynamic(path)
        [issue] = caught.value.issues
        assert issue.message == "Go templates are not supported"
        assert issue.path.startswith("line ")
        return
    config = load_dynamic(path)
    if path.stem.startswith("simple_file"):
        assert config.http.routers, "a simple file defines routers"


# --------------------------------------------------------------------------
# (c) Traefik's integration fixtures, placeholders filled
# --------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
# Only range/if/end occur in the corpus; unrolling them once keeps each range
# body once and each if body, which is valid configuration for these files.
CONTROL = re.compile(r"\{\{-?\s*(?:range|if|end)\b[^}]*\}\}")
UNSUPPORTED_CONTROL = re.compile(r"\{\{-?\s*(?:else|with|define|template|block)\b")
TOML_KEY = re.compile(r"\s*([\w.\-\"]+)\s*=")

# Deliberately broken fixtures and what this layer must say about them.
# Dangling references (unknown entry point, middleware, TLS options) and
# services without a type are the snapshot builder's to refuse; this layer
# only refuses what is structurally invalid.
REFUSED = {
    # JSON content in a .toml file.
    "invalid_configuration.toml": "line 1: Invalid statement",
}


def placeholder_value(expression: str, line: str, start: int, end: int, self_path: Path) -> str:
    """A plausible value for ``{{ .Name }}`` given its name and where it sits."""
    name = expression.split()[-1].split(".")[-1] if expression.split() else ""
    before, after = line[:start], line[end:]
    key_match = TOML_KEY.match(line)
    key = key_match.group(1).lower() if key_match else ""
    if name == "SelfFilename":
        return str(self_path)
    if re.fullmatch(r"\$\w+", expression):
        # A range variable naming a resolver: the routers refer to "default".
        return "default"
    if before.endswith("://") or after.startswith(":"):
        return "127.0.0.1"
    if before.endswith(":"):
        return "8081"
    if "Content" in name:
        return "-----BEGIN CERTIFICATE-----"
    if "File" in name or "Path" in name:
        return str(self_path.with_name("dynamic.toml"))
    if name == "Precedence":
        return '["file", "docker"]'
    if name == "KeyType":
        return "RSA4096"
    if name == "Strategy":
        return "keep"
    if name == "DefaultRuleSyntax":
        return "v3"
    if name.endswith("Timeout"):
        return "1s"
    if name.startswith("Port"):
        return ":8081"
    if key == "url" or name.endswith("URL"):
        return "http://127.0.0.1:8081"
    if "normalize" in expression:
        return "whoami"
    return "127.0.0.1:8081"


def fill_placeholders(text: str, self_path: Path) -> str:
    text = CONTROL.sub("", text)
    lines = []
    for line in text.splitlines(keepends=True):
        while (match := PLACEHOLDER.search(line)) is not None:
            value = placeholder_value(match.group(1), line, match.start(), match.end(), self_path)
            line = line[: match.start()] + value + line[match.end() :]
        lines.append(line)
    return "".join(lines)


@pytest.mark.parametrize("path", corpus_files(INTEGRATION_FIXTURES))
def test_integration_fixture_loads_as_static_and_dynamic(path: Path | None, tmp_path: Path) -> None:
    require_corpus()
    assert path is not None
    text = path.read_text()
    if UNSUPPORTED_CONTROL.search(text):
        pytest.skip("Go template control structures other than range/if")
    filled = tmp_path / path.name
    filled.write_text(fill_placeholders(text, filled))
    assert "{{" not in filled.read_text()

    relative = str(path.relative_to(INTEGRATION_FIXTURES))
    if relative in REFUSED:
        for loader in (load_static, load_dynamic):
            with pytest.raises(ConfigError) as caught:
                loader(filled)
            assert REFUSED[relative] in str(caught.value)
        return

    static = load_static(filled)
    for name, entry_point in static.entry_points.items():
        assert parse_address(entry_point.address), name
    load_dynamic(filled)


def test_broken_fixtures_that_this_layer_accepts(tmp_path: Path) -> None:
    """What the snapshot layer will have to refuse is still carried through."""
    require_corpus()

    def load_dynamic_filled(relative: str) -> DynamicConfig:
        source = INTEGRATION_FIXTURES / relative
        filled = tmp_path / relative.replace("/", "_")
        filled.write_text(fill_placeholders(source.read_text(), filled))
        return load_dynamic(filled)

    routers = load_dynamic_filled("router_errors.toml")
    assert routers.http.routers["router3"].entry_points == ["unknown-entrypoint"]
    assert routers.http.routers["router5"].middlewares == ["unknown"]
    assert routers.udp.routers["router3"].entry_points == ["unknown-entrypoint"]

    services = load_dynamic_filled("service_errors.toml")
    untyped = services.http.services["service1"]
    assert (untyped.load_balancer, untyped.weighted, untyped.mirroring) == (None, None, None)
    assert untyped.failover is None and untyped.highest_random_weight is None

    for name in ("tcp/service_errors.toml", "udp/service_errors.toml"):
        config = load_dynamic_filled(name)
        assert config.tcp.services.get("service1", config.udp.services.get("service1"))

    tls = load_dynamic_filled("https/https_invalid_tls_options.toml")
    client_auth = tls.tls.options["invalidTLSOptions"].client_auth
    assert client_auth is not None
    assert client_auth.client_auth_type == "RequireAndVerifyClientCert"
    assert client_auth.ca_files == []
