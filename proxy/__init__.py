"""Turnout: a high-performance L4/L7 reverse proxy that reads Traefik v3 configuration."""

from proxy import native

__version__ = "0.1.0"

native.choose()  # before any compiled module is imported: the extensions, or the sources
