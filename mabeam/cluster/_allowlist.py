"""The coordinator's allow-lists: which public keys may connect, and as what.

Two directories of ``.key`` files (``mabeam keys generate`` writes them): one for node
agents, one for submitters. A key's role is the directory it sits in; its name (the
file's metadata, else the file name) is the node id a node key may use, or the
submitter's name. Keys given in memory (the local mode's) join them.

The coordinator asks ``lookup`` for every message (the ZAP handler for every
handshake), so the lists are a dict lookup. ``refresh`` reloads a directory when its
mtime changed (adding, removing or renaming a file changes it) and at least every
``rescan_s`` seconds (for a file rewritten in place): removing a key file revokes that
key for the next message of a peer already connected, not only its next handshake.

A bad file in a directory is skipped with a logged reason, never fatal: a running
coordinator must not fall over because someone dropped a stray file there. A key that
appears twice with different roles or names, or two keys that claim one node name, is
refused as ambiguous (each is logged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .keys import PUBLIC_SUFFIX, KeyFileError, KeyPair, Role, load_key

__all__ = ("AllowList", "Peer")

log = logging.getLogger("mabeam.coordinator")

RESCAN_S: Final = 5.0
"""Longest time a key rewritten in place (same file, dir mtime unchanged) stays valid."""
_MAX_KEYS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Peer:
    """Who an allowed key is: its role and name."""

    role: Role
    name: str


class AllowList:
    """Allowed public keys by role; see the module docstring."""

    def __init__(
        self,
        nodes: str | os.PathLike[str] | None = None,
        clients: str | os.PathLike[str] | None = None,
        keys: Iterable[KeyPair] = (),
        *,
        rescan_s: float = RESCAN_S,
    ) -> None:
        self._dirs: dict[Role, Path] = {}
        for role, folder in (("node", nodes), ("client", clients)):
            if folder is None:
                continue
            path = Path(folder)
            if not path.is_dir():
                raise KeyFileError(
                    f"the {role}s allow-list {path} is not a directory (create it and put"
                    f" the {role}s' {PUBLIC_SUFFIX} files in it)"
                )
            self._dirs[role] = path  # type: ignore[index]
        self._fixed = tuple(key.public_only() for key in keys)
        for key in self._fixed:
            if key.role == "coordinator":
                raise KeyFileError(f"a coordinator key cannot be allowed in: {key!r}")
        self._rescan_s = rescan_s
        self._stamps: dict[Role, tuple[int, int] | None] = {}
        self._loaded: dict[Role, list[KeyPair]] = {}
        self._warned: set[tuple[str, int]] = set()
        # path -> ((mtime_ns, size, inode), key): a rescan reads only the files that changed
        self._parsed: dict[str, tuple[tuple[int, int, int], KeyPair]] = {}
        self._by_key: dict[str, Peer] = {}
        self._scanned_at = -float("inf")
        self.version = 0  # counts the changes of the allowed keys (readers compare it)
        self.refresh(0.0, force=True)

    @property
    def directories(self) -> dict[Role, Path]:
        """The directories read, by role."""
        return dict(self._dirs)

    def lookup(self, public_text: str) -> Peer | None:
        """The peer an allowed key (Z85 text) belongs to, or None."""
        return self._by_key.get(public_text)

    def __len__(self) -> int:
        return len(self._by_key)

    def refresh(self, now: float, *, force: bool = False) -> bool:
        """Reload the directories that changed (or all, past ``rescan_s``); True when
        the allowed keys changed."""
        rescan = force or now - self._scanned_at >= self._rescan_s
        changed = False
        for role, path in self._dirs.items():
            stamp = _stamp(path)
            if rescan or stamp != self._stamps.get(role):
                self._stamps[role] = stamp
                keys = self._scan(role, path)
                if keys != self._loaded.get(role):
                    self._loaded[role] = keys
                    changed = True
        if rescan:
            self._scanned_at = now
        if changed or force:
            self._rebuild()
        return changed

    def _scan(self, role: Role, folder: Path) -> list[KeyPair]:
        keys: list[KeyPair] = []
        seen: set[str] = set()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.error(
                "cannot read the %ss allow-list %s: %s (no %s admitted)", role, folder, exc, role
            )
            return keys
        for entry in entries:
            if not entry.name.endswith(PUBLIC_SUFFIX) or entry.name.startswith("."):
                continue
            if len(keys) >= _MAX_KEYS:
                log.error(
                    "the %ss allow-list %s holds over %d keys; the rest are ignored",
                    role,
                    folder,
                    _MAX_KEYS,
                )
                break
            try:
                info = entry.stat()
                stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
                known = self._parsed.get(entry.path)
                if known is not None and known[0] == stamp:
                    key = known[1]  # unchanged since the last scan: not read again
                else:
                    key = load_key(entry.path, role=role).public_only()
                    stem = entry.name[: -len(PUBLIC_SUFFIX)]
                    if key.name != stem:  # the operator names a key, not its holder
                        raise KeyFileError(
                            f"its key is named {key.name!r}, not {stem!r} as the file is"
                            f" (rename the file {key.name}{PUBLIC_SUFFIX})"
                        )
                    self._parsed[entry.path] = (stamp, key)
            except (KeyFileError, OSError) as exc:
                self._warn(entry, f"skipping {entry.path}: {exc}")
                continue
            seen.add(entry.path)
            keys.append(key)
        prefix = os.path.join(str(folder), "")
        for path in [p for p in self._parsed if p.startswith(prefix) and p not in seen]:
            del self._parsed[path]  # removed files
        return keys

    def _warn(self, entry: os.DirEntry[str], message: str) -> None:
        try:
            mark = (entry.path, entry.stat().st_mtime_ns)
        except OSError:
            mark = (entry.path, 0)
        if mark not in self._warned:  # once per version of the file, not every rescan
            self._warned.add(mark)
            log.warning("allow-list: %s", message)

    def _rebuild(self) -> None:
        by_key: dict[str, Peer] = {}
        refused: set[str] = set()
        node_names: dict[str, str] = {}
        for key in (*self._fixed, *(k for keys in self._loaded.values() for k in keys)):
            text = key.public_text
            peer = Peer(key.role, key.name)
            known = by_key.get(text)
            if known is not None and known != peer:
                log.error(
                    "allow-list: key %s is both %s %r and %s %r: refused",
                    text,
                    known.role,
                    known.name,
                    peer.role,
                    peer.name,
                )
                refused.add(text)
                continue
            if key.role == "node":
                holder = node_names.get(key.name)
                if holder is not None and holder != text:
                    log.error("allow-list: two keys claim node name %r: both refused", key.name)
                    refused.update((holder, text))
                    continue
                node_names[key.name] = text
            by_key[text] = peer
        for text in refused:
            by_key.pop(text, None)
        before = len(self._by_key)
        self._by_key = by_key
        self.version += 1
        log.info("allow-list: %d keys (%d before)", len(by_key), before)


def _stamp(folder: Path) -> tuple[int, int] | None:
    try:
        info = folder.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_ino)
