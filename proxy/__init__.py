"""Turnout: a high-performance L4/L7 reverse proxy that reads Traefik v3 configuration."""

__version__ = "0.1.0"
