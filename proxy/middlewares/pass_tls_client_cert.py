"""passTLSClientCert: accepted, and a no-op until Turnout terminates TLS.

Traefik fills X-Forwarded-Tls-Client-Cert (``pem``) and -Info (``info``) from
the client certificate of a mutual-TLS connection, and leaves requests without
one as they are. Turnout has no TLS entry points yet, so no request carries a
client certificate and every request passes unchanged; the X-Forwarded-Tls-*
headers an untrusted client sends were already dropped by the entry point.
"""

from __future__ import annotations

from proxy.config.dynamic import PassTLSClientCert
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, Handler


class PassTLSClientCertHandler(Handler):
    __slots__ = ()


@register("pass_tls_client_cert")
def build(name: str, config: PassTLSClientCert, context: BuildContext) -> Handler:
    return PassTLSClientCertHandler(name)
