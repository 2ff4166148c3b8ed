"""The ``turnout`` command: run, check, explain, version.

Exit codes: 0 ok, 1 configuration error (``FILE: key.path: message`` lines on
stderr, ``FILE:LINE: key.path: message`` where the line is known), 2 bad
command line (argparse's own convention).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import uvloop

from proxy import __version__
from proxy.config.dynamic import DynamicConfig
from proxy.config.load import (
    ConfigError,
    ConfigIssue,
    check_static,
    load_dynamic,
    load_dynamic_directory,
    load_static,
    merge_dynamic,
)
from proxy.config.static import StaticConfig
from proxy.observability import logging as turnout_logging
from proxy.observability.settings import static_issues as observability_issues
from proxy.runtime.report import CheckReport
from proxy.runtime.support import static_issues

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_USAGE = 2

# ``turnout check --live``: one fetch per remote provider, bounded.
LIVE_FETCH_TIMEOUT = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="A high-performance reverse proxy that reads Traefik v3 configuration.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="start the proxy")
    _config_option(run)
    run.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        metavar="N",
        help="worker processes sharing the ports with SO_REUSEPORT (default 1)",
    )
    check = commands.add_parser(
        "check", help="validate a configuration without starting anything (dry run)"
    )
    _config_option(check)
    check.add_argument(
        "dynamic",
        nargs="*",
        metavar="DYNAMIC",
        help="dynamic configuration files or folders to check in place of the file provider's",
    )
    check.add_argument("--json", action="store_true", help="print a machine-readable report")
    check.add_argument(
        "--live",
        action="store_true",
        help="also fetch each remote provider (redis, etcd, http, consulCatalog) once",
    )
    explain = commands.add_parser(
        "explain", help="show how a request would be routed: router, middlewares, service, server"
    )
    _config_option(explain)
    explain.add_argument("--entrypoint", metavar="NAME", help="entry point (default: the first)")
    explain.add_argument("--client-ip", metavar="IP", default="127.0.0.1", help="client address")
    explain.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (repeatable)",
    )
    explain.add_argument(
        "--dynamic",
        action="append",
        default=[],
        metavar="DYNAMIC",
        help="a dynamic configuration file or folder to use in place of the file provider's",
    )
    explain.add_argument("--live", action="store_true", help="also fetch remote providers once")
    explain.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    explain.add_argument("url", metavar="URL", help="http://host[:port]/path?query")
    commands.add_parser("version", help="print the version")
    return parser


def _config_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-c",
        "--config",
        metavar="STATIC_FILE",
        help="static configuration (TOML, YAML or JSON); default: the embedded one",
    )


def _load(config: str | None) -> tuple[StaticConfig, str, Path | None]:
    """The static configuration, its name for messages, and the base for relative provider paths."""
    if config is None:
        defaults = resources.files("proxy") / "defaults"
        path = Path(str(defaults / "turnout.toml"))
        return load_static(path), "<embedded default>", path.parent
    static = load_static(config)
    check_static(static, config)
    return static, config, None


def _print_issues(error: ConfigError) -> None:
    for issue in error.issues:
        print(issue, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        from proxy import native

        print(f"turnout {__version__}")
        print(native.describe())
        return EXIT_OK
    try:
        static, name, base = _load(args.config)
    except ConfigError as error:
        if args.command == "check" and args.json:
            print(json.dumps(CheckReport(errors=list(error.issues)).to_dict(), indent=2))
        else:
            _print_issues(error)
        return EXIT_CONFIG
    warnings = static_issues(static, name)
    refused = observability_issues(static, name)
    if refused:
        if args.command == "check" and args.json:
            print(json.dumps(CheckReport(errors=refused).to_dict(), indent=2))
        else:
            for issue in refused:
                print(issue, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return uvloop.run(_check(static, base, warnings, args))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.command == "explain":
        return uvloop.run(_explain(static, base, args))
    try:
        turnout_logging.configure(static.log.level, static.log.format, static.log.file_path)
    except OSError as exc:
        print(
            f"{name}: log.filePath: cannot open {static.log.file_path!r}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from proxy.runtime.instance import Instance  # the engine is imported only to run
    from proxy.runtime.memory import tune_malloc

    tune_malloc()  # before any worker forks: they inherit it

    if args.workers == 1:
        return uvloop.run(Instance(static, name, base).run())
    from proxy.workers import Supervisor

    def run_worker(index: int) -> int:
        return uvloop.run(Instance(static, name, base, reuse_port=True).run())

    return Supervisor(args.workers, run_worker).run()


async def _check(
    static: StaticConfig, base: Path | None, warnings: list[ConfigIssue], args: argparse.Namespace
) -> int:
    from proxy.runtime.instance import entrypoint_configs
    from proxy.runtime.report import attach_report_lines, check_configs

    sources, notes = await gather_sources(static, base, args.dynamic, live=args.live)
    report = check_configs(
        static, list(entrypoint_configs(static)), sources, warnings=[*warnings, *notes]
    )
    attach_report_lines(report)
    unread = {provider for provider, source, update in sources if update is None}
    _excuse_unread_references(report, unread)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for issue in report.errors:
            print(issue, file=sys.stderr)
        if report.ok:
            print(f"configuration OK: {report.summary()}")
    return EXIT_OK if report.ok else EXIT_CONFIG


async def _explain(static: StaticConfig, base: Path | None, args: argparse.Namespace) -> int:
    from proxy.runtime.explain import ExplainError, explain
    from proxy.runtime.instance import entrypoint_configs
    from proxy.runtime.report import attach_report_lines, check_configs
    from proxy.runtime.snapshot import ProviderConfig, build_merged

    sources, notes = await gather_sources(static, base, args.dynamic, live=args.live)
    entrypoints = list(entrypoint_configs(static))
    report = check_configs(static, entrypoints, sources, warnings=notes)
    attach_report_lines(report)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for issue in report.errors:
        print(f"error: {issue}", file=sys.stderr)
    if report.errors:
        print(
            "warning: this configuration would be refused by turnout run; "
            "explaining the parts that compile",
            file=sys.stderr,
        )
    configs = [
        ProviderConfig(provider, update, source)
        for provider, source, update in sources
        if isinstance(update, DynamicConfig)
    ]
    snapshot, _ = build_merged(configs, static, entrypoints=entrypoints, pools=None)
    try:
        text = explain(
            snapshot,
            args.method,
            args.url,
            entrypoint=args.entrypoint or entrypoints[0],
            client_ip=args.client_ip,
            headers=args.header,
        )
    except ExplainError as error:
        print(f"turnout explain: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(text)
    return EXIT_OK if report.ok else EXIT_CONFIG


Source = tuple[str, str, "DynamicConfig | ConfigError | None"]


async def gather_sources(
    static: StaticConfig, base: Path | None, dynamic_args: list[str], *, live: bool
) -> tuple[list[Source], list[ConfigIssue]]:
    """Each provider's configuration as ``turnout run`` would read it at start-up.

    ``dynamic_args`` replace the file provider's own file or folder. Remote
    providers are read only with ``live``; otherwise they are listed with
    ``None`` and a note.
    """
    from proxy.providers import configured
    from proxy.providers.file import FileProvider

    sources: list[Source] = []
    notes: list[ConfigIssue] = []
    providers = configured(static, base)
    if dynamic_args:
        providers = [p for p in providers if not isinstance(p, FileProvider)]
        sources.append(("file", ", ".join(dynamic_args), _load_dynamic_args(dynamic_args)))
    for provider in providers:
        if isinstance(provider, FileProvider):
            sources.append((provider.name, provider.source, _read(provider)))
            continue
        if not live:
            sources.append((provider.name, provider.source, None))
            notes.append(
                ConfigIssue(
                    provider.source,
                    "",
                    f"provider {provider.name} not read (add --live to fetch it once)",
                )
            )
            continue
        sources.append((provider.name, provider.source, await _fetch_once(provider)))
        await provider.close()
    return sources, notes


def _read(provider: Any) -> DynamicConfig | ConfigError:
    try:
        return provider.load()
    except ConfigError as error:
        return error


async def _fetch_once(provider: Any) -> DynamicConfig | ConfigError:
    from proxy.providers import ProviderUnavailable

    try:
        return await asyncio.wait_for(provider.fetch(), LIVE_FETCH_TIMEOUT)
    except ConfigError as error:
        return error
    except (ProviderUnavailable, TimeoutError, OSError) as error:
        message = str(error) or f"no answer within {LIVE_FETCH_TIMEOUT:g}s"
        return ConfigError([ConfigIssue(provider.source, "", f"cannot read: {message}")])


def _load_dynamic_args(paths: list[str]) -> DynamicConfig | ConfigError:
    loaded: list[tuple[str, DynamicConfig]] = []
    issues: list[ConfigIssue] = []
    for path in paths:
        try:
            if Path(path).is_dir():
                loaded.append((path, load_dynamic_directory(path)))
            else:
                loaded.append((path, load_dynamic(path)))
        except ConfigError as error:
            issues.extend(error.issues)
    merged = merge_dynamic(loaded, issues)
    return ConfigError(issues) if issues else merged


_UNREAD_REFERENCE = re.compile(r"^unknown (service|middleware) '[^']*@([^']+)'$")


def _excuse_unread_references(report: Any, unread: set[str]) -> None:
    """Without --live, a name of an unread provider is unknown, not wrong: warn instead."""
    if not unread:
        return
    kept = []
    for issue in report.errors:
        match = _UNREAD_REFERENCE.match(issue.message)
        if match and match.group(2) in unread:
            report.warnings.append(
                ConfigIssue(
                    issue.file,
                    issue.path,
                    f"{issue.message} not checked: provider {match.group(2)} not read (add --live)",
                    issue.line,
                )
            )
        else:
            kept.append(issue)
    report.errors[:] = kept


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= count <= 256:
        raise argparse.ArgumentTypeError("must be between 1 and 256")
    return count


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
