"""The ``turnout`` command: run, check, version.

Exit codes: 0 ok, 1 configuration error (``FILE: key.path: message`` lines on
stderr), 2 bad command line (argparse's own convention).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import uvloop

from proxy import __version__
from proxy.config.load import ConfigError, load_static
from proxy.config.static import StaticConfig
from proxy.observability import logging as turnout_logging
from proxy.runtime.support import static_warnings

EXIT_OK = 0
EXIT_CONFIG = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="A high-performance reverse proxy that reads Traefik v3 configuration.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="start the proxy")
    run.add_argument(
        "-c",
        "--config",
        metavar="STATIC_FILE",
        help="static configuration (TOML, YAML or JSON); default: the embedded one",
    )
    check = commands.add_parser(
        "check", help="validate a configuration without starting anything (dry run)"
    )
    check.add_argument(
        "-c",
        "--config",
        metavar="STATIC_FILE",
        help="static configuration; default: the embedded one",
    )
    commands.add_parser("version", help="print the version")
    return parser


def _load(config: str | None) -> tuple[StaticConfig, str, Path | None]:
    """The static configuration, its name for messages, and the base for relative provider paths."""
    if config is None:
        defaults = resources.files("proxy") / "defaults"
        path = Path(str(defaults / "turnout.toml"))
        return load_static(path), "<embedded default>", path.parent
    return load_static(config), config, None


def _print_issues(error: ConfigError) -> None:
    for issue in error.issues:
        print(issue, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"turnout {__version__}")
        return EXIT_OK
    try:
        static, name, base = _load(args.config)
    except ConfigError as error:
        _print_issues(error)
        return EXIT_CONFIG
    for warning in static_warnings(static, name):
        print(f"warning: {warning}", file=sys.stderr)
    if args.command == "check":
        return _check(static, base)
    turnout_logging.configure(static.log.level)
    from proxy.runtime.instance import Instance  # the engine is imported only to run

    instance = Instance(static, name, base)
    return uvloop.run(instance.run())


def _check(static: StaticConfig, base: Path | None) -> int:
    from proxy.runtime.instance import entrypoint_configs, load_provider_config
    from proxy.runtime.snapshot import build_snapshot

    try:
        dynamic, source = load_provider_config(static, base)
    except ConfigError as error:
        _print_issues(error)
        return EXIT_CONFIG
    snapshot, issues = build_snapshot(
        dynamic, static, entrypoints=list(entrypoint_configs(static)), source=source, pools=None
    )
    if issues:
        for issue in issues:
            print(issue, file=sys.stderr)
        return EXIT_CONFIG
    routers = _count(len(snapshot.routers), "router")
    print(f"configuration OK: {routers}, {_count(snapshot.user_services, 'service')}")
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
