"""The file provider: ``providers.file.{filename | directory, watch}``.

One file, or every .toml/.yaml/.yml/.json under a folder (recursively, merged,
a resource defined differently in two files being an error naming both), read
by the configuration layer's loaders. Go templates are refused there.

Watching (``watch = true``, Traefik's default) uses inotify through the
``watchfiles`` package. For a single file the whole parent folder is watched,
not the file: editors save by writing a temporary file and renaming it over
the original, and Kubernetes swaps a ``..data`` symlink, so the file's own
inode is not the thing that changes. Every batch of events (``watchfiles``
waits until 50 ms pass without a new one) re-reads the source, and only a
content change is handed on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import (
    CONFIG_EXTENSIONS,
    ConfigError,
    load_dynamic,
    load_dynamic_directory,
)
from proxy.config.static import FileProvider as FileProviderConfig
from proxy.providers.base import Provider, Sink

log = logging.getLogger("turnout")

# watchfiles yields a batch once no new event came for this long (ms).
SETTLE_MS = 50


class FileProvider(Provider):
    name = "file"

    def __init__(self, config: FileProviderConfig, base: Path | None = None) -> None:
        self.config = config
        self.directory = bool(config.directory and not config.filename)
        path = Path(config.filename or config.directory)
        if base is not None and not path.is_absolute():
            path = base / path
        self.path = path
        self.source = str(path)
        self._fingerprint: bytes | None = None
        self._stop: asyncio.Event | None = None

    # -- reading ----------------------------------------------------------------

    def load(self) -> DynamicConfig:
        """Read the file or folder now; raises ConfigError."""
        if self.directory:
            return load_dynamic_directory(self.path)
        return load_dynamic(self.path)

    async def fetch(self) -> DynamicConfig:
        dynamic = self.load()
        self._fingerprint = self.fingerprint()
        return dynamic

    def fingerprint(self) -> bytes:
        """A digest of everything that is read, to hand on content changes only."""
        digest = hashlib.blake2b(digest_size=16)
        files = sorted(_config_files(self.path)) if self.directory else [self.path]
        for file in files:
            digest.update(str(file).encode("utf-8", "surrogateescape") + b"\0")
            try:
                digest.update(file.read_bytes())
            except OSError as error:
                digest.update(f"unreadable: {error.strerror}".encode())
            digest.update(b"\0")
        return digest.digest()

    def reload(self, sink: Sink, *, force: bool = False) -> None:
        """Re-read and hand on the result if the content changed (or ``force``: SIGHUP)."""
        fingerprint = self.fingerprint()
        if fingerprint == self._fingerprint and not force:
            return
        self._fingerprint = fingerprint
        try:
            update: DynamicConfig | ConfigError = self.load()
        except ConfigError as error:
            update = error
        sink.submit(self.name, update)

    # -- watching ---------------------------------------------------------------

    async def watch(self, sink: Sink) -> None:
        if not self.config.watch:
            await super().watch(sink)
            return
        from watchfiles import awatch  # imported only when watching

        watched = self.path if self.directory else self.path.parent
        self._stop = asyncio.Event()
        log.debug("provider file: watching %s", watched)
        try:
            async for _changes in awatch(
                watched,
                recursive=self.directory,
                step=SETTLE_MS,
                stop_event=self._stop,
                ignore_permission_denied=True,
                # The parent folder may be busy (/etc); only config files matter.
                watch_filter=self._relevant,
            ):
                self.reload(sink)
        except (FileNotFoundError, OSError) as error:
            sink.unreachable(self.name, f"cannot watch {watched}: {error}")
            raise

    def _relevant(self, _change: object, path: str) -> bool:
        if self.directory:
            return True  # a renamed or removed sub-folder changes the set of files too
        name = Path(path).name
        # The file itself (also when an editor renames a temporary file over
        # it) or a Kubernetes ``..data`` symlink swap.
        return name == self.path.name or name.startswith("..")

    async def close(self) -> None:
        if self._stop is not None:
            self._stop.set()


def _config_files(root: Path) -> list[Path]:
    found: list[Path] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.extend(_config_files(entry))
        elif entry.suffix.lower() in CONFIG_EXTENSIONS and entry.is_file():
            found.append(entry)
    return found
