"""HTTP/1.1: the client side (server), the exchange, and the backend side (upstream)."""

from proxy import native

native.choose()  # before any module of this package is imported: compiled or sources
