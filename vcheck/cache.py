"""The on-disk result cache every expensive pass goes through (predictions, attacks,
corruptions, patches, image slices, verifier verdicts).

One entry is one file ``<root>/<namespace>/<key>.vc``: a header line holding the sha256 of the
payload, then the payload (an ``.npz`` of named arrays, or UTF-8 JSON). The cache never
trusts what it cannot verify and never fails a run:

- a payload whose checksum does not match (damaged in place, truncated, foreign) is reported
  with a :class:`~vcheck.errors.VcheckWarning`, recomputed and, when possible, replaced;
- writes are atomic (temp file + rename), so a reader never sees half an entry;
- files are written with the user's umask applied to 0o666 (group-readable by default) and
  directories to 0o777, so a team can share one cache; a valid entry is never deleted;
- a read-only or unwritable cache still serves hits; a miss is computed once, kept for the
  session by the caller, and a single warning says the result could not be stored;
- processes sharing the cache (pytest-xdist workers, parallel CI jobs) compute an entry once:
  :meth:`ResultCache.arrays` holds an exclusive lock on ``<root>/.locks/<namespace>/<key>.lock``
  (``fcntl.flock``)
  while it computes, so the second process waits and then reads the stored entry.

Keys are sha256 hex digests of everything that determines the result (:func:`cache_key`).

Public names: :class:`ResultCache`, :func:`cache_key`, :func:`check_cache_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vcheck.errors import InvalidArgument, VcheckWarning

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no inter-process locking
    fcntl = None

_MAGIC = b"vcheck-cache 1 "
_SUFFIX = ".vc"


def cache_key(*parts: Any) -> str:
    """sha256 of ``parts`` as canonical JSON (paths and other objects via ``str``).

    >>> cache_key("a", 1) == cache_key("a", 1) != cache_key("a", 2)
    True
    """
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def check_cache_dir(path: Path) -> None:
    """Refuse a cache location that cannot work before any expensive work starts.

    A missing directory is fine (it is created on first write); a path that is a file, or
    below one, is a usage error. A read-only directory is allowed: hits are served, misses
    are computed without being stored.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InvalidArgument(
                    f"cache_dir={path}: {parent} is a file, not a directory; pass "
                    "--cache-dir=DIR (a directory, created if missing) or --no-cache"
                )
            return


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ResultCache:
    """Checksummed entries under ``root / namespace``.

    Args:
        root: the cache directory (``--cache-dir``); None disables caching (``--no-cache``).
        namespace: one sub-folder per kind of result, e.g. ``"predictions"``.

    Example:
        >>> import tempfile
        >>> c = ResultCache(Path(tempfile.mkdtemp()), "demo")
        >>> c.store_arrays("k", {"x": np.arange(3)})
        True
        >>> c.load_arrays("k")["x"].tolist()
        [0, 1, 2]
    """

    def __init__(self, root: Path | None, namespace: str) -> None:
        self.root = None if root is None else Path(root) / namespace
        self.namespace = namespace
        self._warned_unwritable = False

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, key: str) -> Path:
        if self.root is None:
            raise ValueError("caching is disabled")
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"key={key!r}: expected a hex digest (use cache_key)")
        return self.root / f"{key}{_SUFFIX}"

    # -- bytes ---------------------------------------------------------------------------------
    def _read(self, key: str) -> bytes | None:
        if self.root is None:
            return None
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # e.g. another user's entry we may not read
            self._warn(f"cannot read cache entry {path} ({exc}); recomputing")
            return None
        head, sep, payload = blob.partition(b"\n")
        digest = head[len(_MAGIC) :].decode("ascii", "replace")
        if not sep or not head.startswith(_MAGIC) or hashlib.sha256(payload).hexdigest() != digest:
            self._warn(f"cache entry {path} fails its checksum (damaged or foreign); recomputing")
            return None
        return payload

    def _write(self, key: str, payload: bytes) -> bool:
        """Store atomically; False (with one warning per cache) when the cache is unwritable."""
        if self.root is None:
            return False
        header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
        target = self.path(key)
        if target.exists() and not os.access(target, os.R_OK):
            return False  # another user's entry that we may not read: keep it, never replace
        tmp = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: share like any file
            os.replace(tmp, target)
            return True
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if not self._warned_unwritable:
                self._warned_unwritable = True
                self._warn(
                    f"cannot write to the cache {self.root} ({exc.strerror or exc}); results "
                    "are computed for this run only. Pass a writable --cache-dir to keep them"
                )
            return False

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(f"vcheck: {message}", VcheckWarning, stacklevel=3)

    # -- arrays --------------------------------------------------------------------------------
    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (missing, damaged or unreadable)."""
        payload = self._read(key)
        if payload is None:
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (OSError, ValueError) as exc:
            self._warn(f"cache entry {self.path(key)} is unreadable ({exc}); recomputing")
            return None

    def store_arrays(self, key: str, arrays: Mapping[str, np.ndarray]) -> bool:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        return self._write(key, buf.getvalue())

    # -- JSON ----------------------------------------------------------------------------------
    def load_json(self, key: str) -> Any | None:
        payload = self._read(key)
        if payload is None:
            return None
        try:
            return json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._warn(f"cache entry {self.path(key)} is unreadable ({exc}); recomputing")
            return None

    def store_json(self, key: str, obj: Any) -> bool:
        text = json.dumps(obj, sort_keys=True, allow_nan=True)
        return self._write(key, text.encode("utf-8"))

    # -- locking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive inter-process lock on ``key`` (released on exit, or when the
        process dies). Where no lock file can be opened (a read-only cache), nothing is
        locked: each process then computes for itself, as it must anyway."""
        if self.root is None or fcntl is None:
            yield
            return
        folder = self.root.parent / ".locks" / self.namespace  # beside the entries, not among
        path = folder / self.path(key).with_suffix(".lock").name
        fd = None
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # another user's lock: read it
            try:
                fd = os.open(path, flags, 0o666)
                break
            except OSError:
                continue
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- both ----------------------------------------------------------------------------------
    def arrays(
        self,
        key: str,
        compute: Callable[[], Mapping[str, np.ndarray]],
        validate: Callable[[Mapping[str, np.ndarray]], bool] | None = None,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """``(arrays, from_cache)``: the stored entry if it verifies (and passes
        ``validate``), else ``compute()``, stored for next time. Under :meth:`lock`, so
        concurrent processes asking for one key compute it once."""
        with self.lock(key):
            hit = self.load_arrays(key)
            if hit is not None and (validate is None or validate(hit)):
                return hit, True
            if hit is not None:
                self._warn(f"cache entry {self.path(key)} has the wrong shape; recomputing")
            fresh = {k: np.asarray(v) for k, v in compute().items()}
            self.store_arrays(key, fresh)
            return fresh, False
