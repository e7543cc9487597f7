"""Exceptions and warnings raised by vcheck.

Every error derives from :class:`VcheckError` and also from the builtin a caller would
naturally catch (``ValueError``, ``KeyError``, ``FileNotFoundError``), so both work. Messages
follow one template: what is wrong (``name=value``), what was expected, and how to fix it.

Public names: VcheckError, InvalidArgument, UnknownNameError, MissingArtefactError,
CorruptArtefactError, VcheckWarning.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VcheckError(Exception):
    """Root of every vcheck error; the plugin turns it into a pytest usage error (exit 4)."""


class InvalidArgument(VcheckError, ValueError):
    """A value given by the user is of the wrong type or outside its allowed range."""


class UnknownNameError(VcheckError, KeyError):
    """A name (model, eval set, config key, metric) is not registered.

    The message lists close matches, so a typo is fixed from the error line alone.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        known: Iterable[str],
        hint: str = "",
        featured: Iterable[str] = (),
    ) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        msg = f"Unknown {kind} {name!r}."
        if close:
            msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif featured:  # nothing close: point at the common choices instead
            msg += " Did you mean one of " + ", ".join(repr(c) for c in featured) + "?"
        if hint:
            msg += f" {hint}"
        super().__init__(msg)
        self.name = name
        self.suggestions = close

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class MissingArtefactError(VcheckError, FileNotFoundError):
    """A file vcheck needs (weights, data, label file) is not where it was looked for."""

    def __str__(self) -> str:
        return str(self.args[0])


class CorruptArtefactError(VcheckError, ValueError):
    """A file exists but cannot be used: unreadable checkpoint, shape mismatch, bad format."""


class VcheckWarning(UserWarning):
    """Something was recovered from (e.g. a corrupt cache entry recomputed)."""
