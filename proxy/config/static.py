"""Traefik v3 static configuration (install configuration).

The tree mirrors Traefik's ``pkg/config/static`` Go structs and its generated
reference ``docs/content/reference/static-configuration/file.yaml``, plus keys
of the v3.7 Go structs that reference does not list yet
(``forwardedHeaders.notAppendXForwardedFor``, HTTP/2 header table sizes,
``api.middlewares``, ``providers.precedence``).

Every key of that reference decodes, including those of features Turnout does
not implement (Kubernetes, Docker, ACME DNS, OTLP...): reading them is what lets
a Traefik file load unchanged; the runtime says which it ignores.

Turnout-only keys, documented where they are declared:

- ``entryPoints.<name>.transport.maxHeaderBytes`` (default 32768): request head
  limit before answering 431. Traefik's own ``entryPoints.<name>.http.maxHeaderBytes``
  is read too and wins when set (see :meth:`EntryPoint.max_header_bytes`).
"""

import ipaddress
from typing import Any, Literal

import msgspec

from proxy.config.common import ClientTLS, ConfigStruct, Domain, Spiffe, list_default
from proxy.config.durations import Duration

__all__ = [
    "EntryPoint",
    "EntryPointsTransport",
    "ForwardedHeaders",
    "LifeCycle",
    "Providers",
    "RespondingTimeouts",
    "StaticConfig",
    "parse_address",
]

# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


class LifeCycle(ConfigStruct):
    """Shutdown timing: keep accepting for ``requestAcceptGraceTimeout``, then
    give in-flight requests ``graceTimeOut`` to finish."""

    request_accept_grace_timeout: Duration = Duration(0)
    grace_time_out: Duration = msgspec.field(default=Duration(10), name="graceTimeOut")


class RespondingTimeouts(ConfigStruct):
    """Client-side timeouts; 0 means none."""

    read_timeout: Duration = Duration(60)
    write_timeout: Duration = Duration(0)
    idle_timeout: Duration = Duration(180)


class EntryPointsTransport(ConfigStruct):
    life_cycle: LifeCycle = msgspec.field(default_factory=LifeCycle)
    responding_timeouts: RespondingTimeouts = msgspec.field(default_factory=RespondingTimeouts)
    # 0: no limit.
    keep_alive_max_time: Duration = Duration(0)
    keep_alive_max_requests: int = 0
    # Turnout-specific: largest request head (request line + headers) accepted
    # before answering 431. Traefik has no such transport key; 32 KiB sits
    # between nginx (8 KiB per line) and Go's 1 MiB.
    max_header_bytes: int = 32768
    # Turnout-specific limits (HAProxy's tune.http.maxhdr is 101; nginx's
    # large_client_header_buffers line size is 8 KiB): more headers -> 431,
    # a longer request target -> 414.
    max_header_count: int = 100
    max_request_target_bytes: int = 8192
    # Turnout-specific: client connections open at once on this entry point;
    # past it new connections are reset at accept (existing ones keep working).
    # 0: no limit.
    max_connections: int = 10000


class ProxyProtocol(ConfigStruct):
    """Accept PROXY protocol headers from ``trustedIPs`` (or anyone if insecure)."""

    insecure: bool = False
    trusted_ips: list[str] = msgspec.field(default_factory=list, name="trustedIPs")


class ForwardedHeaders(ConfigStruct):
    """Which peers may set X-Forwarded-*; others have them replaced."""

    insecure: bool = False
    trusted_ips: list[str] = msgspec.field(default_factory=list, name="trustedIPs")
    connection: list[str] = []
    not_append_x_forwarded_for: bool = False
    add_x_forwarded_scheme_headers: bool = False


class RedirectEntryPoint(ConfigStruct):
    to: str = ""
    scheme: str = "https"
    permanent: bool = True
    # Max int32 - 1 in Traefik: the generated redirect router wins over all
    # user routers.
    priority: int = 2147483646


class Redirections(ConfigStruct):
    entry_point: RedirectEntryPoint | None = None


class EntryPointTLS(ConfigStruct):
    options: str = ""
    cert_resolver: str = ""
    domains: list[Domain] = []


class EncodedCharacters(ConfigStruct):
    """Encoded characters allowed in request paths.

    In v3.7 entry points allow them all unless told otherwise (the
    ``encodedCharacters`` middleware is the strict, opt-in counterpart).
    """

    allow_encoded_slash: bool = True
    allow_encoded_back_slash: bool = True
    allow_encoded_null_character: bool = True
    allow_encoded_semicolon: bool = True
    allow_encoded_percent: bool = True
    allow_encoded_question_mark: bool = True
    allow_encoded_hash: bool = True


class EntryPointHTTP(ConfigStruct):
    redirections: Redirections | None = None
    middlewares: list[str] = []
    tls: EntryPointTLS | None = None
    encoded_characters: EncodedCharacters = msgspec.field(default_factory=EncodedCharacters)
    encode_query_semicolons: bool = False
    sanitize_path: bool = True
    # Traefik's key; None: not set (see EntryPoint.max_header_bytes).
    max_header_bytes: int | None = None
    # keep, delete or reject.
    underscore_headers_strategy: str = "keep"


class HTTP2Config(ConfigStruct):
    max_concurrent_streams: int = 250
    max_decoder_header_table_size: int = 4096
    max_encoder_header_table_size: int = 4096


class HTTP3Config(ConfigStruct):
    advertised_port: int = 0


class UDPConfig(ConfigStruct):
    # Idle UDP session lifetime.
    timeout: Duration = Duration(3)
    # Turnout-specific: larger datagrams are dropped (and counted), never cut
    # short. 65,535 is Traefik's read buffer; above any UDP payload over IPv4.
    max_datagram_bytes: int = 65535


class ObservabilityConfig(ConfigStruct):
    access_logs: bool = True
    metrics: bool = True
    tracing: bool = True
    trace_verbosity: str = "minimal"


class EntryPoint(ConfigStruct):
    """A listening address and how connections on it are handled.

    ``address`` is ``[host]:port[/tcp|/udp]``; see :func:`parse_address`.
    """

    address: str = ""
    allow_acme_by_pass: bool = msgspec.field(default=False, name="allowACMEByPass")
    reuse_port: bool = False
    as_default: bool = False
    transport: EntryPointsTransport = msgspec.field(default_factory=EntryPointsTransport)
    proxy_protocol: ProxyProtocol | None = None
    forwarded_headers: ForwardedHeaders = msgspec.field(default_factory=ForwardedHeaders)
    http: EntryPointHTTP = msgspec.field(default_factory=EntryPointHTTP)
    http2: HTTP2Config = msgspec.field(default_factory=HTTP2Config)
    http3: HTTP3Config | None = None
    udp: UDPConfig = msgspec.field(default_factory=UDPConfig)
    observability: ObservabilityConfig = msgspec.field(default_factory=ObservabilityConfig)

    @property
    def max_header_bytes(self) -> int:
        """Request head limit: Traefik's ``http.maxHeaderBytes`` when set, else
        Turnout's ``transport.maxHeaderBytes``."""
        if self.http.max_header_bytes:
            return self.http.max_header_bytes
        return self.transport.max_header_bytes


def entry_point_problems(static: "StaticConfig") -> list[tuple[str, str]]:
    """(key path, message) for entry point values that decode but cannot be used."""
    problems = []
    for name, entrypoint in static.entry_points.items():
        prefix = f"entryPoints.{name}"
        lists = [("forwardedHeaders", entrypoint.forwarded_headers.trusted_ips)]
        if entrypoint.proxy_protocol is not None:
            lists.append(("proxyProtocol", entrypoint.proxy_protocol.trusted_ips))
        for section, entries in lists:
            for index, entry in enumerate(entries):
                try:
                    ipaddress.ip_network(entry.strip(), strict=False)
                except ValueError:
                    problems.append(
                        (
                            f"{prefix}.{section}.trustedIPs[{index}]",
                            f"{entry!r} is not an IP address or CIDR range",
                        )
                    )
        if entrypoint.address.strip().lower().endswith("/udp"):
            udp = entrypoint.udp
            if float(udp.timeout) <= 0:
                # Traefik refuses it too ("timeout should be greater than zero").
                problems.append((f"{prefix}.udp.timeout", "must be greater than zero"))
            if not 1 <= udp.max_datagram_bytes <= 65535:
                problems.append((f"{prefix}.udp.maxDatagramBytes", "must be 1-65535"))
    return problems


class AddressError(ValueError):
    """An entry point address that cannot be listened on."""


def parse_address(address: str) -> tuple[str, int, Literal["tcp", "udp"]]:
    """Split ``[host]:port[/tcp|/udp]`` into ``(host, port, proto)``.

    ``":8000"`` gives host ``""`` (all interfaces); ``"[::1]:8000"`` gives
    ``"::1"``. The protocol suffix is case-insensitive and defaults to tcp.
    Raises :class:`AddressError` naming what is wrong.
    """
    text = address.strip()
    proto: Literal["tcp", "udp"] = "tcp"
    if "/" in text:
        text, _, suffix = text.partition("/")
        lowered = suffix.lower()
        if lowered == "udp":
            proto = "udp"
        elif lowered != "tcp":
            raise AddressError(f"invalid address {address!r}: protocol must be tcp or udp")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise AddressError(f"invalid address {address!r}: expected [host]:port")
        host, port_text = text[1:close], text[close + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise AddressError(f"invalid address {address!r}: missing port (e.g. ':8000')")
        if ":" in host:
            raise AddressError(f"invalid address {address!r}: IPv6 hosts go in brackets")
    if not port_text.isdigit():
        raise AddressError(f"invalid address {address!r}: port must be a number")
    port = int(port_text)
    if port > 65535:
        raise AddressError(f"invalid address {address!r}: port must be 0-65535")
    return host, port, proto


# --------------------------------------------------------------------------
# Default transports towards backends
# --------------------------------------------------------------------------


class ForwardingTimeouts(ConfigStruct):
    dial_timeout: Duration = Duration(30)
    response_header_timeout: Duration = Duration(0)
    idle_conn_timeout: Duration = Duration(90)


class ServersTransport(ConfigStruct):
    """Default HTTP transport (dynamic ``serversTransports`` override it)."""

    insecure_skip_verify: bool = False
    root_cas: list[str] = msgspec.field(default_factory=list, name="rootCAs")
    max_idle_conns_per_host: int = 200
    forwarding_timeouts: ForwardingTimeouts = msgspec.field(default_factory=ForwardingTimeouts)
    spiffe: Spiffe | None = None


class TCPTLSClientConfig(ConfigStruct):
    insecure_skip_verify: bool = False
    root_cas: list[str] = msgspec.field(default_factory=list, name="rootCAs")
    spiffe: Spiffe | None = None


class TCPServersTransport(ConfigStruct):
    dial_keep_alive: Duration = Duration(15)
    dial_timeout: Duration = Duration(30)
    termination_delay: Duration = Duration(0.1)
    tls: TCPTLSClientConfig | None = None


# --------------------------------------------------------------------------
# Providers
# --------------------------------------------------------------------------


class DockerProvider(ConfigStruct):
    exposed_by_default: bool = True
    constraints: str = ""
    allow_empty_services: bool = False
    network: str = ""
    use_bind_port_ip: bool = msgspec.field(default=False, name="useBindPortIP")
    watch: bool = True
    default_rule: str = "Host(`{{ normalize .Name }}`)"
    username: str = ""
    password: str = ""
    endpoint: str = "unix:///var/run/docker.sock"
    tls: ClientTLS | None = None
    http_client_timeout: Duration = Duration(0)


class SwarmProvider(DockerProvider):
    refresh_seconds: Duration = Duration(15)


class FileProvider(ConfigStruct):
    directory: str = ""
    watch: bool = True
    filename: str = ""
    debug_log_generated_template: bool = False


class IngressEndpoint(ConfigStruct):
    ip: str = ""
    hostname: str = ""
    published_service: str = ""


class KubernetesIngressProvider(ConfigStruct):
    endpoint: str = ""
    token: str = ""
    cert_auth_file_path: str = ""
    namespaces: list[str] = []
    label_selector: str = ""
    ingress_class: str = ""
    ingress_endpoint: IngressEndpoint | None = None
    throttle_duration: Duration = Duration(0)
    allow_empty_services: bool = False
    allow_external_name_services: bool = False
    disable_ingress_class_lookup: bool = False
    disable_cluster_scope_resources: bool = False
    native_lb_by_default: bool = msgspec.field(default=False, name="nativeLBByDefault")
    strict_prefix_matching: bool = False


class KubernetesIngressNGINXProvider(ConfigStruct):
    endpoint: str = ""
    token: str = ""
    cert_auth_file_path: str = ""
    throttle_duration: Duration = Duration(0)
    watch_namespace: str = ""
    watch_namespace_selector: str = ""
    ingress_class: str = ""
    controller_class: str = ""
    watch_ingress_without_class: bool = False
    ingress_class_by_name: bool = False
    publish_service: str = ""
    publish_status_address: list[str] = []
    default_backend_service: str = ""
    disable_svc_external_name: bool = False


class KubernetesCRDProvider(ConfigStruct):
    endpoint: str = ""
    token: str = ""
    cert_auth_file_path: str = ""
    namespaces: list[str] = []
    allow_cross_namespace: bool = False
    allow_external_name_services: bool = False
    label_selector: str = ""
    ingress_class: str = ""
    throttle_duration: Duration = Duration(0)
    allow_empty_services: bool = False
    native_lb_by_default: bool = msgspec.field(default=False, name="nativeLBByDefault")
    disable_cluster_scope_resources: bool = False


class StatusAddressService(ConfigStruct):
    name: str = ""
    namespace: str = ""


class StatusAddress(ConfigStruct):
    ip: str = ""
    hostname: str = ""
    service: StatusAddressService | None = None


class KubernetesGatewayProvider(ConfigStruct):
    endpoint: str = ""
    token: str = ""
    cert_auth_file_path: str = ""
    namespaces: list[str] = []
    label_selector: str = ""
    throttle_duration: Duration = Duration(0)
    experimental_channel: bool = False
    status_address: StatusAddress | None = None
    native_lb_by_default: bool = msgspec.field(default=False, name="nativeLBByDefault")


class RestProvider(ConfigStruct):
    insecure: bool = False


class HTTPAuth(ConfigStruct):
    username: str = ""
    password: str = ""


class ConsulCatalogEndpoint(ConfigStruct):
    address: str = ""
    scheme: str = ""
    datacenter: str = ""
    token: str = ""
    tls: ClientTLS | None = None
    http_auth: HTTPAuth | None = None
    endpoint_wait_time: Duration = Duration(0)


class ConsulCatalogProvider(ConfigStruct):
    constraints: str = ""
    endpoint: ConsulCatalogEndpoint = msgspec.field(default_factory=ConsulCatalogEndpoint)
    prefix: str = "traefik"
    refresh_interval: Duration = Duration(15)
    require_consistent: bool = False
    stale: bool = False
    cache: bool = False
    exposed_by_default: bool = True
    default_rule: str = "Host(`{{ normalize .Name }}`)"
    connect_aware: bool = False
    connect_by_default: bool = False
    service_name: str = "traefik"
    watch: bool = False
    strict_checks: list[str] = []
    namespaces: list[str] = []


class NomadEndpoint(ConfigStruct):
    address: str = ""
    region: str = ""
    token: str = ""
    tls: ClientTLS | None = None
    endpoint_wait_time: Duration = Duration(0)


class NomadProvider(ConfigStruct):
    default_rule: str = "Host(`{{ normalize .Name }}`)"
    constraints: str = ""
    endpoint: NomadEndpoint = msgspec.field(default_factory=NomadEndpoint)
    prefix: str = "traefik"
    stale: bool = False
    exposed_by_default: bool = True
    refresh_interval: Duration = Duration(15)
    allow_empty_services: bool = False
    watch: bool = False
    throttle_duration: Duration = Duration(0)
    namespaces: list[str] = []


class ECSProvider(ConfigStruct):
    constraints: str = ""
    exposed_by_default: bool = True
    # Plain seconds in Traefik (an int, not a duration).
    refresh_seconds: int = 15
    default_rule: str = "Host(`{{ normalize .Name }}`)"
    clusters: list[str] = list_default("default")
    auto_discover_clusters: bool = False
    healthy_tasks_only: bool = False
    ecs_anywhere: bool = False
    region: str = ""
    access_key_id: str = msgspec.field(default="", name="accessKeyID")
    secret_access_key: str = ""


class ConsulKVProvider(ConfigStruct):
    root_key: str = "traefik"
    endpoints: list[str] = list_default("127.0.0.1:8500")
    token: str = ""
    tls: ClientTLS | None = None
    namespaces: list[str] = []


class EtcdProvider(ConfigStruct):
    root_key: str = "traefik"
    endpoints: list[str] = list_default("127.0.0.1:2379")
    tls: ClientTLS | None = None
    username: str = ""
    password: str = ""


class ZooKeeperProvider(ConfigStruct):
    root_key: str = "traefik"
    endpoints: list[str] = list_default("127.0.0.1:2181")
    username: str = ""
    password: str = ""


class RedisSentinel(ConfigStruct):
    master_name: str = ""
    username: str = ""
    password: str = ""
    latency_strategy: bool = False
    random_strategy: bool = False
    replica_strategy: bool = False
    use_disconnected_replicas: bool = False


class RedisProvider(ConfigStruct):
    root_key: str = "traefik"
    endpoints: list[str] = list_default("127.0.0.1:6379")
    tls: ClientTLS | None = None
    username: str = ""
    password: str = ""
    db: int = 0
    sentinel: RedisSentinel | None = None


class HTTPProvider(ConfigStruct):
    endpoint: str = ""
    poll_interval: Duration = Duration(5)
    poll_timeout: Duration = Duration(5)
    headers: dict[str, str] = {}
    tls: ClientTLS | None = None
    # None: Traefik's default limit.
    max_response_body_size: int | None = None


class Providers(ConfigStruct):
    """Providers; each one is enabled by its presence."""

    # None: Turnout's default, 100 ms (Traefik's is 2 s; see the README's
    # compatibility table and proxy.runtime.instance.throttle_of).
    providers_throttle_duration: Duration | None = None
    # v3.7 routing precedence between providers, as provider names, first
    # wins. Not in the reference; the type is inferred from Traefik's
    # integration fixture (a TOML value, not a string), so a single name or a
    # comma-separated string are accepted too.
    precedence: list[str] = []
    docker: DockerProvider | None = None
    swarm: SwarmProvider | None = None
    file: FileProvider | None = None
    kubernetes_ingress: KubernetesIngressProvider | None = None
    kubernetes_ingress_nginx: KubernetesIngressNGINXProvider | None = msgspec.field(
        default=None, name="kubernetesIngressNGINX"
    )
    kubernetes_crd: KubernetesCRDProvider | None = msgspec.field(default=None, name="kubernetesCRD")
    kubernetes_gateway: KubernetesGatewayProvider | None = None
    rest: RestProvider | None = None
    consul_catalog: ConsulCatalogProvider | None = None
    nomad: NomadProvider | None = None
    ecs: ECSProvider | None = None
    consul: ConsulKVProvider | None = None
    etcd: EtcdProvider | None = None
    zoo_keeper: ZooKeeperProvider | None = None
    redis: RedisProvider | None = None
    http: HTTPProvider | None = None
    # Provider plugin name -> its free-form settings.
    plugin: dict[str, dict[str, Any]] = {}


# --------------------------------------------------------------------------
# API, ping, metrics, logs, tracing
# --------------------------------------------------------------------------


class API(ConfigStruct):
    """Presence enables the API; ``insecure`` serves it on entry point ``traefik``."""

    base_path: str = "/"
    insecure: bool = False
    # v3.7: middlewares (``name@provider``) in front of the API/dashboard.
    middlewares: list[str] = []
    dashboard: bool = True
    debug: bool = False
    disable_dashboard_ad: bool = False


class Ping(ConfigStruct):
    entry_point: str = "traefik"
    manual_routing: bool = False
    # Status answered while shutting down.
    terminating_status_code: int = 503


class Prometheus(ConfigStruct):
    buckets: list[float] = list_default(0.1, 0.3, 1.2, 5.0)
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    entry_point: str = "traefik"
    manual_routing: bool = False
    header_labels: dict[str, str] = {}


class Datadog(ConfigStruct):
    address: str = "localhost:8125"
    push_interval: Duration = Duration(10)
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    prefix: str = "traefik"


class Statsd(ConfigStruct):
    address: str = "localhost:8125"
    push_interval: Duration = Duration(10)
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    prefix: str = "traefik"


class InfluxDB2(ConfigStruct):
    address: str = "http://localhost:8086"
    token: str = ""
    push_interval: Duration = Duration(10)
    org: str = ""
    bucket: str = ""
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    additional_labels: dict[str, str] = {}


class OTelGRPC(ConfigStruct):
    endpoint: str = "localhost:4317"
    insecure: bool = False
    tls: ClientTLS | None = None
    headers: dict[str, str] = {}


class OTelHTTP(ConfigStruct):
    endpoint: str = ""
    tls: ClientTLS | None = None
    headers: dict[str, str] = {}


class OTLPMetrics(ConfigStruct):
    grpc: OTelGRPC | None = None
    http: OTelHTTP | None = None
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    explicit_boundaries: list[float] = []
    push_interval: Duration = Duration(10)
    service_name: str = "traefik"
    resource_attributes: dict[str, str] = {}


class Metrics(ConfigStruct):
    add_internals: bool = False
    prometheus: Prometheus | None = None
    datadog: Datadog | None = None
    stats_d: Statsd | None = msgspec.field(default=None, name="statsD")
    influx_db2: InfluxDB2 | None = msgspec.field(default=None, name="influxDB2")
    otlp: OTLPMetrics | None = None


class OTelLog(ConfigStruct):
    service_name: str = "traefik"
    resource_attributes: dict[str, str] = {}
    grpc: OTelGRPC | None = None
    http: OTelHTTP | None = None


class Log(ConfigStruct):
    # Traefik accepts any case (debug, INFO, ...).
    level: str = "ERROR"
    format: str = "common"
    no_color: bool = False
    file_path: str = ""
    max_size: int = 100
    max_age: int = 0
    max_backups: int = 0
    compress: bool = False
    otlp: OTelLog | None = None


class AccessLogFilters(ConfigStruct):
    status_codes: list[str] = []
    retry_attempts: bool = False
    min_duration: Duration = Duration(0)


class FieldHeaders(ConfigStruct):
    default_mode: str = "drop"
    names: dict[str, str] = {}


class AccessLogFields(ConfigStruct):
    default_mode: str = "keep"
    names: dict[str, str] = {}
    headers: FieldHeaders | None = None


class AccessLog(ConfigStruct):
    """Presence enables access logs (stdout unless ``filePath``)."""

    file_path: str = ""
    format: str = "common"
    filters: AccessLogFilters | None = None
    fields: AccessLogFields | None = None
    buffering_size: int = 0
    add_internals: bool = False
    otlp: OTelLog | None = None


class OTLPTracing(ConfigStruct):
    grpc: OTelGRPC | None = None
    http: OTelHTTP | None = None


class Tracing(ConfigStruct):
    service_name: str = "traefik"
    resource_attributes: dict[str, str] = {}
    captured_request_headers: list[str] = []
    captured_response_headers: list[str] = []
    safe_query_params: list[str] = []
    sample_rate: float = 1.0
    add_internals: bool = False
    otlp: OTLPTracing | None = None
    # Deprecated in Traefik (use resourceAttributes), still read.
    global_attributes: dict[str, str] = {}


class HostResolver(ConfigStruct):
    cname_flattening: bool = False
    resolv_config: str = "/etc/resolv.conf"
    resolv_depth: int = 5


# --------------------------------------------------------------------------
# Certificates resolvers (ACME, Tailscale)
# --------------------------------------------------------------------------


class EAB(ConfigStruct):
    kid: str = ""
    hmac_encoded: str = ""


class Propagation(ConfigStruct):
    disable_checks: bool = False
    disable_ans_checks: bool = msgspec.field(default=False, name="disableANSChecks")
    require_all_rns: bool = msgspec.field(default=False, name="requireAllRNS")
    delay_before_checks: Duration = Duration(0)


class DNSChallenge(ConfigStruct):
    provider: str = ""
    resolvers: list[str] = []
    propagation: Propagation | None = None
    # Deprecated in Traefik (use propagation), still read.
    delay_before_check: Duration = Duration(0)
    disable_propagation_check: bool = False


class HTTPChallenge(ConfigStruct):
    entry_point: str = ""
    delay: Duration = Duration(0)


class TLSChallenge(ConfigStruct):
    delay: Duration = Duration(0)


class ACME(ConfigStruct):
    email: str = ""
    ca_server: str = "https://acme-v02.api.letsencrypt.org/directory"
    preferred_chain: str = ""
    profile: str = ""
    email_addresses: list[str] = []
    disable_common_name: bool = False
    storage: str = "acme.json"
    key_type: str = "RSA4096"
    eab: EAB | None = None
    # Hours.
    certificates_duration: int = 2160
    client_timeout: Duration = Duration(0)
    client_response_header_timeout: Duration = Duration(0)
    ca_certificates: list[str] = []
    ca_system_cert_pool: bool = False
    ca_server_name: str = ""
    dns_challenge: DNSChallenge | None = None
    http_challenge: HTTPChallenge | None = None
    tls_challenge: TLSChallenge | None = None


class Tailscale(ConfigStruct):
    """Presence enables Tailscale certificates (no options)."""


class CertificateResolver(ConfigStruct):
    acme: ACME | None = None
    tailscale: Tailscale | None = None


# --------------------------------------------------------------------------
# Experimental, core, misc
# --------------------------------------------------------------------------


class PluginSettings(ConfigStruct):
    envs: list[str] = []
    mounts: list[str] = []
    use_unsafe: bool = False


class PluginDescriptor(ConfigStruct):
    module_name: str = ""
    version: str = ""
    settings: PluginSettings | None = None


class LocalPluginDescriptor(ConfigStruct):
    module_name: str = ""
    settings: PluginSettings | None = None


class FastProxy(ConfigStruct):
    debug: bool = False


class Experimental(ConfigStruct):
    plugins: dict[str, PluginDescriptor] = {}
    local_plugins: dict[str, LocalPluginDescriptor] = {}
    abort_on_plugin_failure: bool = False
    fast_proxy: FastProxy | None = None
    otlplogs: bool = False
    kubernetes_ingress_nginx: bool = msgspec.field(default=False, name="kubernetesIngressNGINX")
    kubernetes_gateway: bool = False


class Core(ConfigStruct):
    # Deprecated in Traefik: v2 rules syntax.
    default_rule_syntax: str = "v3"


class SpiffeClient(ConfigStruct):
    workload_api_addr: str = msgspec.field(default="", name="workloadAPIAddr")


class OCSP(ConfigStruct):
    responder_overrides: dict[str, str] = {}


class Global(ConfigStruct):
    check_new_version: bool = False
    send_anonymous_usage: bool = False


# --------------------------------------------------------------------------
# Root
# --------------------------------------------------------------------------


class StaticConfig(ConfigStruct):
    """The static configuration: what Turnout listens on and where it reads routing."""

    global_: Global | None = msgspec.field(default=None, name="global")
    servers_transport: ServersTransport = msgspec.field(default_factory=ServersTransport)
    tcp_servers_transport: TCPServersTransport = msgspec.field(default_factory=TCPServersTransport)
    entry_points: dict[str, EntryPoint] = {}
    providers: Providers = msgspec.field(default_factory=Providers)
    api: API | None = None
    metrics: Metrics | None = None
    ping: Ping | None = None
    log: Log = msgspec.field(default_factory=Log)
    access_log: AccessLog | None = None
    tracing: Tracing | None = None
    host_resolver: HostResolver | None = None
    certificates_resolvers: dict[str, CertificateResolver] = {}
    experimental: Experimental | None = None
    core: Core | None = None
    spiffe: SpiffeClient | None = None
    ocsp: OCSP | None = None
