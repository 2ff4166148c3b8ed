"""Traefik's key-value layout, shared by the Redis and etcd providers.

A configuration is stored one value per key under ``rootKey`` (default
``traefik``)::

    traefik/http/routers/web/rule                           Host(`example.com`)
    traefik/http/routers/web/entryPoints/0                  web
    traefik/http/services/app/loadBalancer/servers/0/url    http://10.0.0.1:80

The keys become the same nested tree a file gives (numbered levels are lists,
key names match case-insensitively: the configuration layer does both), and
the tree is decoded by the very code that decodes files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError, ConfigIssue, decode_dynamic


def kv_tree(pairs: Mapping[str, str], root_key: str, source: str) -> dict[str, Any]:
    """The nested tree of every key under ``root_key``; raises ConfigError on clashes."""
    prefix = root_key.strip("/") + "/"
    tree: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    for key in sorted(pairs):
        if not key.startswith(prefix):
            continue
        parts = [part for part in key[len(prefix) :].split("/") if part]
        if not parts:
            continue
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                issues.append(
                    ConfigIssue(
                        source,
                        key,
                        f"{prefix}{'/'.join(parts[: depth + 1])} holds a value "
                        "and also has keys below it",
                    )
                )
                break
            node = child
        else:
            leaf = parts[-1]
            if isinstance(node.get(leaf), dict):
                issues.append(ConfigIssue(source, key, "holds a value and also has keys below it"))
                continue
            node[leaf] = pairs[key]
    if issues:
        raise ConfigError(issues)
    return tree


def decode_kv(pairs: Mapping[str, str], root_key: str, source: str) -> DynamicConfig:
    """Key-value pairs to a dynamic configuration; raises ConfigError."""
    return decode_dynamic(kv_tree(pairs, root_key, source), source)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key after every key starting with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"
