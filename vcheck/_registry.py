"""A small name registry shared by models and eval sets (timm-style, with "did you mean")."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vcheck.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to entries; unknown names raise with close matches."""

    def __init__(self, kind: str, hint: str = "", featured: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.hint = hint
        self.featured = featured  # suggested when no registered name is close to a typo
        self._entries: dict[str, T] = {}  # canonical name -> entry
        self._aliases: dict[str, str] = {}  # alias -> canonical name

    def register(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        if name in self._entries or name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def decorator(self, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Register a function under its ``__name__``."""

        def wrap(fn: T) -> T:
            return self.register(fn.__name__, fn, aliases)  # type: ignore[attr-defined]

        return wrap

    def canonical(self, name: str) -> str:
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(
            self.kind, name, self.names(include_aliases=True), self.hint, self.featured
        )

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self, pattern: str = "*", include_aliases: bool = False) -> list[str]:
        """Registered names matching an fnmatch ``pattern``, sorted."""
        pool = set(self._entries) | (set(self._aliases) if include_aliases else set())
        return sorted(n for n in pool if fnmatch.fnmatch(n, pattern))
