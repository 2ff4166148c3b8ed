"""Traefik v3 dynamic configuration (routing): ``http``, ``tcp``, ``udp``, ``tls``.

The tree mirrors Traefik's ``pkg/config/dynamic`` Go structs and its generated
reference ``docs/content/reference/dynamic-configuration/file.yaml``, plus the
v3.7 keys that reference does not list yet (service ``middlewares``, failover
``errors``, the ``encodedCharacters`` middleware, TCP health checks, router
``parentRefs``).

User-named maps (routers, services, middlewares, transports, TLS options and
stores, header maps) are ``dict[str, X]``; their keys are kept as written.

References between objects (a router's service, a chain's middlewares) are
plain strings here; the snapshot builder resolves and checks them.
"""

from typing import Any

import msgspec

from proxy.config.common import (
    Certificate,
    ClientTLS,
    ConfigStruct,
    Domain,
    Spiffe,
    list_default,
)
from proxy.config.durations import Duration

__all__ = [
    "DynamicConfig",
    "HTTPConfiguration",
    "Middleware",
    "Router",
    "Server",
    "ServersLoadBalancer",
    "ServersTransport",
    "Service",
    "TCPConfiguration",
    "TCPRouter",
    "TCPService",
    "TLSConfiguration",
    "TLSOptions",
    "UDPConfiguration",
    "UDPRouter",
    "UDPService",
]


# --------------------------------------------------------------------------
# HTTP routers
# --------------------------------------------------------------------------


class RouterTLSConfig(ConfigStruct):
    """Presence of ``tls`` (even empty) makes the router serve HTTPS only."""

    options: str = ""
    cert_resolver: str = ""
    domains: list[Domain] = []


class RouterObservabilityConfig(ConfigStruct):
    """Per-router observability; ``None`` means "inherit the entry point's"."""

    access_logs: bool | None = None
    metrics: bool | None = None
    tracing: bool | None = None
    trace_verbosity: str = "minimal"


class Router(ConfigStruct):
    """An HTTP router.

    ``priority`` is ``None`` when absent: Traefik then uses the length of the
    rule. ``entry_points`` empty means "every default entry point".
    ``parent_refs`` (v3.7 multi-layer routing) names parent routers this one
    is a child of; a child is tried only for requests its parent matched.
    """

    entry_points: list[str] = []
    middlewares: list[str] = []
    service: str = ""
    rule: str = ""
    rule_syntax: str = ""
    priority: int | None = None
    tls: RouterTLSConfig | None = None
    observability: RouterObservabilityConfig | None = None
    parent_refs: list[str] = []


# --------------------------------------------------------------------------
# HTTP services
# --------------------------------------------------------------------------


class Cookie(ConfigStruct):
    name: str = ""
    secure: bool = False
    http_only: bool = False
    same_site: str = ""
    max_age: int = 0
    path: str = "/"
    domain: str = ""


class Sticky(ConfigStruct):
    cookie: Cookie | None = None


class Server(ConfigStruct):
    """A backend URL. ``weight`` is ``None`` when absent (Traefik then uses 1)."""

    url: str = ""
    weight: int | None = None
    preserve_path: bool = False

    @property
    def effective_weight(self) -> int:
        return 1 if self.weight is None else self.weight


class ServerHealthCheck(ConfigStruct):
    """Active health check of a load balancer's servers."""

    scheme: str = ""
    mode: str = "http"
    path: str = ""
    method: str = ""
    status: int = 0
    port: int = 0
    interval: Duration = Duration(30)
    # None: use ``interval`` for unhealthy servers too.
    unhealthy_interval: Duration | None = None
    timeout: Duration = Duration(5)
    hostname: str = ""
    follow_redirects: bool = True
    headers: dict[str, str] = {}


class PassiveServerHealthCheck(ConfigStruct):
    failure_window: Duration = Duration(10)
    max_failed_attempts: int = 1


class ResponseForwarding(ConfigStruct):
    # Negative: flush after every write.
    flush_interval: Duration = Duration(0.1)


class ServersLoadBalancer(ConfigStruct):
    """A pool of servers (``strategy``: wrr, p2c, hrw, leasttime)."""

    sticky: Sticky | None = None
    servers: list[Server] = []
    strategy: str = "wrr"
    health_check: ServerHealthCheck | None = None
    passive_health_check: PassiveServerHealthCheck | None = None
    pass_host_header: bool = True
    response_forwarding: ResponseForwarding = msgspec.field(default_factory=ResponseForwarding)
    servers_transport: str = ""


class HealthCheck(ConfigStruct):
    """Presence turns on health-status propagation for a parent service."""


class WRRService(ConfigStruct):
    """A child of a weighted service; ``weight`` ``None`` means 1."""

    name: str = ""
    weight: int | None = None

    @property
    def effective_weight(self) -> int:
        return 1 if self.weight is None else self.weight


class WeightedRoundRobin(ConfigStruct):
    services: list[WRRService] = []
    sticky: Sticky | None = None
    health_check: HealthCheck | None = None


class HighestRandomWeight(ConfigStruct):
    services: list[WRRService] = []
    health_check: HealthCheck | None = None


class MirrorService(ConfigStruct):
    name: str = ""
    percent: int = 0


class Mirroring(ConfigStruct):
    service: str = ""
    mirror_body: bool = True
    # -1: no limit.
    max_body_size: int = -1
    mirrors: list[MirrorService] = []
    health_check: HealthCheck | None = None


class FailoverErrors(ConfigStruct):
    """v3.7: fail over on these response statuses (``"500-504"``)."""

    status: list[str] = []
    # None: Traefik's default, -1 (no limit on the buffered request body).
    max_request_body_bytes: int | None = None


class Failover(ConfigStruct):
    service: str = ""
    fallback: str = ""
    health_check: HealthCheck | None = None
    errors: FailoverErrors | None = None


class Service(ConfigStruct):
    """An HTTP service: exactly one of the kinds must be set.

    A service with none set decodes fine here; the snapshot builder refuses it
    ("service has no type"), as Traefik does at runtime.
    """

    # v3.7: middlewares applied in front of this service.
    middlewares: list[str] = []
    load_balancer: ServersLoadBalancer | None = None
    highest_random_weight: HighestRandomWeight | None = None
    weighted: WeightedRoundRobin | None = None
    mirroring: Mirroring | None = None
    failover: Failover | None = None


# --------------------------------------------------------------------------
# HTTP middlewares
# --------------------------------------------------------------------------


class AddPrefix(ConfigStruct):
    prefix: str = ""


class BasicAuth(ConfigStruct):
    users: list[str] = []
    users_file: str = ""
    realm: str = "traefik"
    remove_header: bool = False
    header_field: str = ""


class Buffering(ConfigStruct):
    # 0: no limit.
    max_request_body_bytes: int = 0
    mem_request_body_bytes: int = 1048576
    max_response_body_bytes: int = 0
    mem_response_body_bytes: int = 1048576
    retry_expression: str = ""


class Chain(ConfigStruct):
    middlewares: list[str] = []


class CircuitBreaker(ConfigStruct):
    expression: str = ""
    check_period: Duration = Duration(0.1)
    fallback_duration: Duration = Duration(10)
    recovery_duration: Duration = Duration(10)
    response_code: int = 503


class Compress(ConfigStruct):
    excluded_content_types: list[str] = []
    included_content_types: list[str] = []
    min_response_body_bytes: int = 1024
    # Empty: Traefik's default set of encodings.
    encodings: list[str] = []
    default_encoding: str = ""


class ContentType(ConfigStruct):
    auto_detect: bool = False


class DigestAuth(ConfigStruct):
    users: list[str] = []
    users_file: str = ""
    remove_header: bool = False
    realm: str = "traefik"
    header_field: str = ""


class EncodedCharacters(ConfigStruct):
    """v3.7 middleware (also the entry point ``http.encodedCharacters`` option)."""

    allow_encoded_slash: bool = False
    allow_encoded_back_slash: bool = False
    allow_encoded_null_character: bool = False
    allow_encoded_semicolon: bool = False
    allow_encoded_percent: bool = False
    allow_encoded_question_mark: bool = False
    allow_encoded_hash: bool = False


class ErrorPage(ConfigStruct):
    status: list[str] = []
    status_rewrites: dict[str, int] = {}
    service: str = ""
    query: str = ""
    error_request_headers: list[str] = []


class ClientTLSWithCAOptional(ClientTLS):
    ca_optional: bool = False


class ForwardAuth(ConfigStruct):
    address: str = ""
    tls: ClientTLSWithCAOptional | None = None
    trust_forward_header: bool = False
    auth_response_headers: list[str] = []
    auth_response_headers_regex: str = ""
    auth_request_headers: list[str] = []
    add_auth_cookies_to_response: list[str] = []
    header_field: str = ""
    forward_body: bool = False
    # -1: no limit.
    max_body_size: int = -1
    max_response_body_size: int = -1
    preserve_location_header: bool = False
    preserve_request_method: bool = False


class GrpcWeb(ConfigStruct):
    allow_origins: list[str] = []


class Headers(ConfigStruct):
    """Headers middleware. A custom header whose value is ``""`` is removed."""

    custom_request_headers: dict[str, str] = {}
    custom_response_headers: dict[str, str] = {}
    access_control_allow_credentials: bool = False
    access_control_allow_headers: list[str] = []
    access_control_allow_methods: list[str] = []
    access_control_allow_origin_list: list[str] = []
    access_control_allow_origin_list_regex: list[str] = []
    access_control_expose_headers: list[str] = []
    access_control_max_age: int = 0
    add_vary_header: bool = False
    allowed_hosts: list[str] = []
    hosts_proxy_headers: list[str] = []
    ssl_proxy_headers: dict[str, str] = {}
    sts_seconds: int = 0
    sts_include_subdomains: bool = False
    sts_preload: bool = False
    force_sts_header: bool = msgspec.field(default=False, name="forceSTSHeader")
    frame_deny: bool = False
    custom_frame_options_value: str = ""
    content_type_nosniff: bool = False
    browser_xss_filter: bool = False
    custom_browser_xss_value: str = msgspec.field(default="", name="customBrowserXSSValue")
    content_security_policy: str = ""
    content_security_policy_report_only: str = ""
    public_key: str = ""
    referrer_policy: str = ""
    permissions_policy: str = ""
    is_development: bool = False
    # Deprecated in Traefik, still read.
    feature_policy: str = ""
    ssl_redirect: bool = False
    ssl_temporary_redirect: bool = False
    ssl_host: str = ""
    ssl_force_host: bool = False


class IPStrategy(ConfigStruct):
    """Which address is the client: ``depth`` from the right of X-Forwarded-For,
    or the first not in ``excludedIPs``; default the peer address."""

    depth: int = 0
    excluded_ips: list[str] = msgspec.field(default_factory=list, name="excludedIPs")
    ipv6_subnet: int | None = None


class IPAllowList(ConfigStruct):
    source_range: list[str] = []
    ip_strategy: IPStrategy | None = None
    # 0: Traefik's default, 403.
    reject_status_code: int = 0


class IPWhiteList(ConfigStruct):
    """Deprecated name of ipAllowList, still read."""

    source_range: list[str] = []
    ip_strategy: IPStrategy | None = None


class SourceCriterion(ConfigStruct):
    ip_strategy: IPStrategy | None = None
    request_header_name: str = ""
    request_host: bool = False


class InFlightReq(ConfigStruct):
    amount: int = 0
    source_criterion: SourceCriterion | None = None


class TLSClientCertificateSubjectDNInfo(ConfigStruct):
    country: bool = False
    province: bool = False
    locality: bool = False
    organization: bool = False
    organizational_unit: bool = False
    common_name: bool = False
    serial_number: bool = False
    domain_component: bool = False


class TLSClientCertificateIssuerDNInfo(ConfigStruct):
    country: bool = False
    province: bool = False
    locality: bool = False
    organization: bool = False
    common_name: bool = False
    serial_number: bool = False
    domain_component: bool = False


class TLSClientCertificateInfo(ConfigStruct):
    not_after: bool = False
    not_before: bool = False
    sans: bool = False
    serial_number: bool = False
    subject: TLSClientCertificateSubjectDNInfo | None = None
    issuer: TLSClientCertificateIssuerDNInfo | None = None


class PassTLSClientCert(ConfigStruct):
    pem: bool = False
    info: TLSClientCertificateInfo | None = None


class RedisStore(ConfigStruct):
    """Redis used by the rate limiter to share its buckets."""

    endpoints: list[str] = list_default("localhost:6379")
    tls: ClientTLS | None = None
    username: str = ""
    password: str = ""
    db: int = 0
    pool_size: int = 0
    min_idle_conns: int = 0
    max_active_conns: int = 0
    read_timeout: Duration = Duration(3)
    write_timeout: Duration = Duration(3)
    dial_timeout: Duration = Duration(5)


class RateLimit(ConfigStruct):
    """``average`` requests per ``period``, bursts of ``burst``; 0 disables."""

    average: int = 0
    period: Duration = Duration(1)
    burst: int = 1
    source_criterion: SourceCriterion | None = None
    redis: RedisStore | None = None


class RedirectRegex(ConfigStruct):
    regex: str = ""
    replacement: str = ""
    permanent: bool = False


class RedirectScheme(ConfigStruct):
    scheme: str = ""
    port: str = ""
    permanent: bool = False


class ReplacePath(ConfigStruct):
    path: str = ""


class ReplacePathRegex(ConfigStruct):
    regex: str = ""
    replacement: str = ""


class Retry(ConfigStruct):
    attempts: int = 0
    initial_interval: Duration = Duration(0.0)  # Traefik v3: unset, retried at once
    # Traefik v3.7: no more tries once this long passed since the first (0: no limit).
    timeout: Duration = Duration(0.0)
    # None: Traefik's default, 2 MiB; -1: no limit.
    max_request_body_bytes: int | None = None
    status: list[str] = []  # "503", "500-599": answers tried again, like failures
    disable_retry_on_network_error: bool = False
    retry_non_idempotent_method: bool = False  # POST, PATCH and LOCK retried on status too


class StripPrefix(ConfigStruct):
    prefixes: list[str] = []
    # Deprecated in Traefik, still read.
    force_slash: bool = False


class StripPrefixRegex(ConfigStruct):
    regex: list[str] = []


class Middleware(ConfigStruct):
    """One HTTP middleware: exactly one of the kinds is expected to be set."""

    add_prefix: AddPrefix | None = None
    basic_auth: BasicAuth | None = None
    buffering: Buffering | None = None
    chain: Chain | None = None
    circuit_breaker: CircuitBreaker | None = None
    compress: Compress | None = None
    content_type: ContentType | None = None
    digest_auth: DigestAuth | None = None
    encoded_characters: EncodedCharacters | None = None
    errors: ErrorPage | None = None
    forward_auth: ForwardAuth | None = None
    grpc_web: GrpcWeb | None = None
    headers: Headers | None = None
    ip_allow_list: IPAllowList | None = msgspec.field(default=None, name="ipAllowList")
    ip_white_list: IPWhiteList | None = msgspec.field(default=None, name="ipWhiteList")
    in_flight_req: InFlightReq | None = None
    pass_tls_client_cert: PassTLSClientCert | None = msgspec.field(
        default=None, name="passTLSClientCert"
    )
    # Plugin name -> its free-form settings.
    plugin: dict[str, dict[str, Any]] | None = None
    rate_limit: RateLimit | None = None
    redirect_regex: RedirectRegex | None = None
    redirect_scheme: RedirectScheme | None = None
    replace_path: ReplacePath | None = None
    replace_path_regex: ReplacePathRegex | None = None
    retry: Retry | None = None
    strip_prefix: StripPrefix | None = None
    strip_prefix_regex: StripPrefixRegex | None = None


# --------------------------------------------------------------------------
# HTTP servers transports
# --------------------------------------------------------------------------


class ForwardingTimeouts(ConfigStruct):
    """Timeouts towards backends; 0 means none."""

    dial_timeout: Duration = Duration(30)
    response_header_timeout: Duration = Duration(0)
    idle_conn_timeout: Duration = Duration(90)
    read_idle_timeout: Duration = Duration(0)
    ping_timeout: Duration = Duration(15)


class ServersTransport(ConfigStruct):
    """How Turnout talks to a service's backends."""

    server_name: str = ""
    insecure_skip_verify: bool = False
    root_cas: list[str] = msgspec.field(default_factory=list, name="rootCAs")
    certificates: list[Certificate] = []
    cipher_suites: list[str] = []
    min_version: str = ""
    max_version: str = ""
    # 0: Traefik's default (200 idle connections per host).
    max_idle_conns_per_host: int = 0
    forwarding_timeouts: ForwardingTimeouts = msgspec.field(default_factory=ForwardingTimeouts)
    disable_http2: bool = msgspec.field(default=False, name="disableHTTP2")
    peer_cert_uri: str = msgspec.field(default="", name="peerCertURI")
    spiffe: Spiffe | None = None


class HTTPConfiguration(ConfigStruct):
    routers: dict[str, Router] = {}
    services: dict[str, Service] = {}
    middlewares: dict[str, Middleware] = {}
    servers_transports: dict[str, ServersTransport] = {}


# --------------------------------------------------------------------------
# TCP
# --------------------------------------------------------------------------


class RouterTCPTLSConfig(ConfigStruct):
    passthrough: bool = False
    options: str = ""
    cert_resolver: str = ""
    domains: list[Domain] = []


class TCPRouter(ConfigStruct):
    """A TCP router; ``priority`` ``None`` means "length of rule"."""

    entry_points: list[str] = []
    middlewares: list[str] = []
    service: str = ""
    rule: str = ""
    rule_syntax: str = ""
    priority: int | None = None
    tls: RouterTCPTLSConfig | None = None


class TCPServer(ConfigStruct):
    address: str = ""
    tls: bool = False


class ProxyProtocol(ConfigStruct):
    """PROXY protocol header sent to backends."""

    version: int = 2


class TCPServerHealthCheck(ConfigStruct):
    """v3.7: TCP health check (optionally ``send`` a payload, ``expect`` a reply)."""

    port: int = 0
    send: str = ""
    expect: str = ""
    interval: Duration = Duration(30)
    unhealthy_interval: Duration | None = None
    timeout: Duration = Duration(5)


class TCPServersLoadBalancer(ConfigStruct):
    servers: list[TCPServer] = []
    servers_transport: str = ""
    # Deprecated in Traefik (use a serversTransport), still read.
    proxy_protocol: ProxyProtocol | None = None
    # Deprecated: milliseconds; None means the transport's terminationDelay.
    termination_delay: int | None = None
    health_check: TCPServerHealthCheck | None = None


class TCPWRRService(ConfigStruct):
    name: str = ""
    weight: int | None = None

    @property
    def effective_weight(self) -> int:
        return 1 if self.weight is None else self.weight


class TCPWeightedRoundRobin(ConfigStruct):
    services: list[TCPWRRService] = []
    health_check: HealthCheck | None = None


class TCPService(ConfigStruct):
    load_balancer: TCPServersLoadBalancer | None = None
    weighted: TCPWeightedRoundRobin | None = None


class TCPIPAllowList(ConfigStruct):
    source_range: list[str] = []


class TCPInFlightConn(ConfigStruct):
    amount: int = 0


class TCPMiddleware(ConfigStruct):
    ip_allow_list: TCPIPAllowList | None = msgspec.field(default=None, name="ipAllowList")
    ip_white_list: TCPIPAllowList | None = msgspec.field(default=None, name="ipWhiteList")
    in_flight_conn: TCPInFlightConn | None = None


class TCPTLSClientConfig(ConfigStruct):
    server_name: str = ""
    insecure_skip_verify: bool = False
    root_cas: list[str] = msgspec.field(default_factory=list, name="rootCAs")
    certificates: list[Certificate] = []
    peer_cert_uri: str = msgspec.field(default="", name="peerCertURI")
    spiffe: Spiffe | None = None


class TCPServersTransport(ConfigStruct):
    dial_keep_alive: Duration = Duration(15)
    dial_timeout: Duration = Duration(30)
    proxy_protocol: ProxyProtocol | None = None
    termination_delay: Duration = Duration(0.1)
    tls: TCPTLSClientConfig | None = None


class TCPConfiguration(ConfigStruct):
    routers: dict[str, TCPRouter] = {}
    services: dict[str, TCPService] = {}
    middlewares: dict[str, TCPMiddleware] = {}
    servers_transports: dict[str, TCPServersTransport] = {}


# --------------------------------------------------------------------------
# UDP
# --------------------------------------------------------------------------


class UDPRouter(ConfigStruct):
    entry_points: list[str] = []
    service: str = ""


class UDPServer(ConfigStruct):
    address: str = ""


class UDPServersLoadBalancer(ConfigStruct):
    servers: list[UDPServer] = []


class UDPWRRService(ConfigStruct):
    name: str = ""
    weight: int | None = None

    @property
    def effective_weight(self) -> int:
        return 1 if self.weight is None else self.weight


class UDPWeightedRoundRobin(ConfigStruct):
    services: list[UDPWRRService] = []


class UDPService(ConfigStruct):
    load_balancer: UDPServersLoadBalancer | None = None
    weighted: UDPWeightedRoundRobin | None = None


class UDPConfiguration(ConfigStruct):
    routers: dict[str, UDPRouter] = {}
    services: dict[str, UDPService] = {}


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


class CertAndStores(Certificate):
    """A certificate and the stores it goes into (none: the default store)."""

    stores: list[str] = []


class ClientAuth(ConfigStruct):
    ca_files: list[str] = []
    # NoClientCert, RequestClientCert, RequireAnyClientCert,
    # VerifyClientCertIfGiven, RequireAndVerifyClientCert.
    client_auth_type: str = ""


class TLSOptions(ConfigStruct):
    min_version: str = "VersionTLS12"
    max_version: str = ""
    cipher_suites: list[str] = []
    curve_preferences: list[str] = []
    client_auth: ClientAuth | None = None
    sni_strict: bool = False
    alpn_protocols: list[str] = list_default("h2", "http/1.1", "acme-tls/1")
    disable_session_tickets: bool = False
    # Deprecated in Traefik (no effect since Go 1.17), still read.
    prefer_server_cipher_suites: bool = False


class GeneratedCert(ConfigStruct):
    resolver: str = ""
    domain: Domain | None = None


class Store(ConfigStruct):
    default_certificate: Certificate | None = None
    default_generated_cert: GeneratedCert | None = None


class TLSConfiguration(ConfigStruct):
    certificates: list[CertAndStores] = []
    options: dict[str, TLSOptions] = {}
    stores: dict[str, Store] = {}


# --------------------------------------------------------------------------
# Root
# --------------------------------------------------------------------------


class DynamicConfig(ConfigStruct):
    """One complete dynamic configuration (one provider's, or merged files)."""

    http: HTTPConfiguration = msgspec.field(default_factory=HTTPConfiguration)
    tcp: TCPConfiguration = msgspec.field(default_factory=TCPConfiguration)
    udp: UDPConfiguration = msgspec.field(default_factory=UDPConfiguration)
    tls: TLSConfiguration = msgspec.field(default_factory=TLSConfiguration)
