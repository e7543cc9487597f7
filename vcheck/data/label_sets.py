"""Label-set files, read and validated: every entry keyed by the image's file name.

Multi-label evaluation of a single-label classifier needs, per image, the set of classes a
careful rater accepts. Four published formats are read here; all are keyed by file name, so
any subset of the images works (an eval-set sample matches an entry when the last path
component of its id equals the entry's file name, see :func:`file_names`):

- ReaL (``real.json``, "Are we done with ImageNet?"): a JSON list with one list of class
  indices per file; entry ``i`` belongs to file ``i + 1`` of the :class:`FileUniverse`
  (``ILSVRC2012_val_{i+1:08d}.JPEG``). An empty list means the raters found no label.
- Shankar et al. ("Evaluating Machine Accuracy on ImageNet"): ``{file: {"correct": [...],
  "wrong": [...], "unclear": [...]}}`` with WordNet ids (or the model's class names, or
  indices); ``"problematic": true`` marks an image the authors excluded.
- A named slice (ImageNet-M style): a JSON list of file names, or a text file with one
  file name per line (``#`` starts a comment).
- Mistake metadata (google-research/imagenet-mistakes): ``{file: {"top_prediction": int,
  "failure category": str, "failure severity": str}}``; the two published spellings of
  "Fine-grained with OOV" are one category here.

A malformed file (not JSON, wrong length, class index out of range, unknown file name or
label, duplicate entries) raises :class:`LabelFileError` naming the file and the first bad
entry; the profile parser turns it into a usage error before any test runs.

Public names: FileUniverse, IMAGENET_VAL, LabelFileError, ShankarEntry, load_real,
load_shankar, load_file_list, load_mistakes, label_vocabulary, file_names, match_files,
CATEGORIES, SEVERITIES.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vcheck.errors import CorruptArtefactError, MissingArtefactError

# Failure categories of google-research/imagenet-mistakes, keyed by their normalised
# spelling (lower case, single spaces); both published spellings of the OOV category map to
# one name.
CATEGORIES: dict[str, str] = {
    "fine-grained error": "Fine-grained error",
    "fine-grained with oov": "Fine-grained with OOV",
    "fine-grained error with oov": "Fine-grained with OOV",
    "spurious correlation": "Spurious Correlation",
    "non-prototypical": "Non-prototypical",
    "fine-grained with multilabel options": "Fine-grained with Multilabel Options",
}
SEVERITIES = ("Minor", "Borderline", "Major")
_SHANKAR_KEYS = ("correct", "wrong", "unclear", "problematic")
_MISTAKE_KEYS = ("top_prediction", "failure category", "failure severity")


class LabelFileError(CorruptArtefactError):
    """A label file that cannot be used: not JSON, or an entry that breaks its format.

    The message names the file and the first bad entry; fix that entry (or the
    ``file_names``/``num_files`` of the label set, if the file is for other images).
    """


@dataclass(frozen=True)
class FileUniverse:
    """The files a label file may name: ``pattern.format(index=k)`` for k = 1..count.

    ImageNet's validation set is ``ILSVRC2012_val_{index:08d}.JPEG``, k = 1..50,000; a ReaL
    file lists one entry per file of its universe, in this order.
    """

    pattern: str = "ILSVRC2012_val_{index:08d}.JPEG"
    count: int = 50_000

    def __post_init__(self) -> None:
        try:
            first, second = self.pattern.format(index=1), self.pattern.format(index=2)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"file_names={self.pattern!r}: expected a pattern with one {{index}} field, "
                f"e.g. 'ILSVRC2012_val_{{index:08d}}.JPEG' ({exc})"
            ) from None
        if first == second:
            raise ValueError(f"file_names={self.pattern!r}: the pattern must use {{index}}")

    def name(self, position: int) -> str:
        """File name of entry ``position`` (0-based) of a ReaL file."""
        return self.pattern.format(index=position + 1)

    @functools.cached_property
    def positions(self) -> dict[str, int]:
        """File name -> 0-based position."""
        return {self.name(i): i for i in range(self.count)}

    def describe(self) -> str:
        return f"{self.name(0)} ... {self.name(self.count - 1)} ({self.count} files)"


IMAGENET_VAL = FileUniverse()


@dataclass(frozen=True)
class ShankarEntry:
    """One image of a Shankar et al. file: class indices per verdict."""

    correct: frozenset[int]
    wrong: frozenset[int]
    unclear: frozenset[int]
    problematic: bool = False

    @property
    def excluded(self) -> bool:
        """Left out of every metric: marked problematic, or no class is acceptable."""
        return self.problematic or not (self.correct or self.unclear)


# -- reading -----------------------------------------------------------------------------------


def _no_duplicate_keys(path: Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise LabelFileError(f"{path}: entry {key!r} appears twice (duplicate entry)")
            out[key] = value
        return out

    return hook


def _read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingArtefactError(f"label file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(f"cannot read label file {path} ({exc})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError as exc:
        raise LabelFileError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_file_name(name: Any, universe: FileUniverse, path: Path) -> str:
    if not isinstance(name, str) or name not in universe.positions:
        raise LabelFileError(
            f"{path}: unknown file name {name!r}; expected one of {universe.describe()} "
            "(set file_names/num_files of the label set if these are other images)"
        )
    return name


def load_real(
    path: Path, num_classes: int, universe: FileUniverse = IMAGENET_VAL
) -> dict[str, tuple[int, ...]]:
    """A ReaL file as ``{file name: class indices}`` (empty tuple: no label agreed on).

    Raises:
        LabelFileError: not JSON, not one list per file of ``universe``, a class index outside
            ``[0, num_classes)`` or listed twice for one file.
    """
    data = _read_json(path)
    if not isinstance(data, list):
        raise LabelFileError(
            f"{path}: expected a JSON list with one list of class indices per file, "
            f"found a {type(data).__name__}"
        )
    if len(data) != universe.count:
        position = min(len(data), universe.count)
        what = "is missing" if len(data) < universe.count else "is one too many"
        raise LabelFileError(
            f"{path}: expected {universe.count} entries ({universe.describe()}), found "
            f"{len(data)}; entry {position} ({universe.name(position)}) {what}"
        )
    out: dict[str, tuple[int, ...]] = {}
    for i, entry in enumerate(data):
        where = f"{path}: entry {i} ({universe.name(i)})"
        if not isinstance(entry, list) or not all(_is_index(c) for c in entry):
            raise LabelFileError(f"{where} is {entry!r}; expected a list of class indices")
        bad = [c for c in entry if not 0 <= c < num_classes]
        if bad:
            raise LabelFileError(
                f"{where} has class index {bad[0]}, outside [0, {num_classes}) for this model"
            )
        if len(set(entry)) != len(entry):
            twice = next(c for c in entry if entry.count(c) > 1)
            raise LabelFileError(f"{where} lists class {twice} twice (duplicate entry)")
        out[universe.name(i)] = tuple(entry)
    return out


def _imagenet_wnids() -> tuple[str, ...] | None:
    """ImageNet-1k WordNet ids in class-index order (timm's list, or vcheck's copy of it)."""
    from vcheck.data.imagenet import imagenet_wnids

    return imagenet_wnids()


def label_vocabulary(classes: Sequence[str]) -> dict[str, int]:
    """What a label string in a Shankar file may be: a class name of the model or, for an
    ImageNet-1k model (1000 classes), a WordNet id."""
    vocab = {name: i for i, name in enumerate(classes)}
    if len(classes) == 1000:
        wnids = _imagenet_wnids()
        if wnids is not None and len(wnids) == 1000:
            vocab.update({w: i for i, w in enumerate(wnids)})
    return vocab


def _labels(
    value: Any, key: str, vocab: Mapping[str, int], num_classes: int, where: str
) -> frozenset[int]:
    if not isinstance(value, list):
        raise LabelFileError(f"{where}: {key!r} is {value!r}; expected a list of labels")
    out: list[int] = []
    for label in value:
        if _is_index(label):
            if not 0 <= label < num_classes:
                raise LabelFileError(
                    f"{where}: {key!r} has class index {label}, outside [0, {num_classes})"
                )
            index = label
        elif isinstance(label, str) and label in vocab:
            index = vocab[label]
        else:
            hint = "a WordNet id, " if num_classes == 1000 else ""
            raise LabelFileError(
                f"{where}: {key!r} has unknown label {label!r}; expected {hint}a class name "
                f"of the model or a class index in [0, {num_classes})"
            )
        if index in out:
            raise LabelFileError(f"{where}: {key!r} lists {label!r} twice (duplicate entry)")
        out.append(index)
    return frozenset(out)


def load_shankar(
    path: Path,
    classes: Sequence[str],
    universe: FileUniverse = IMAGENET_VAL,
    vocabulary: Mapping[str, int] | None = None,
) -> dict[str, ShankarEntry]:
    """A Shankar et al. multi-label file as ``{file name: ShankarEntry}``.

    Labels are WordNet ids (ImageNet-1k models), class names or class indices
    (``vocabulary`` defaults to :func:`label_vocabulary` of ``classes``). A class may carry
    one verdict per image.
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise LabelFileError(
            f"{path}: expected a JSON object {{file name: {{correct, wrong, unclear}}}}, found "
            f"a {type(data).__name__}"
        )
    vocab = label_vocabulary(classes) if vocabulary is None else vocabulary
    out: dict[str, ShankarEntry] = {}
    for name, entry in data.items():
        _check_file_name(name, universe, path)
        where = f"{path}: entry {name!r}"
        if not isinstance(entry, dict):
            raise LabelFileError(f"{where} is {entry!r}; expected {{correct, wrong, unclear}}")
        extra = [k for k in entry if k not in _SHANKAR_KEYS]
        if extra:
            raise LabelFileError(
                f"{where} has key {extra[0]!r}; expected only {', '.join(_SHANKAR_KEYS)}"
            )
        problematic = entry.get("problematic", False)
        if not isinstance(problematic, bool):
            raise LabelFileError(f"{where}: 'problematic' is {problematic!r}; expected a bool")
        verdicts = {
            k: _labels(entry.get(k, []), k, vocab, len(classes), where)
            for k in ("correct", "wrong", "unclear")
        }
        for a, b in (("correct", "wrong"), ("correct", "unclear"), ("wrong", "unclear")):
            both = verdicts[a] & verdicts[b]
            if both:
                raise LabelFileError(
                    f"{where}: class {classes[min(both)]!r} is both {a} and {b} (duplicate entry)"
                )
        out[name] = ShankarEntry(**verdicts, problematic=problematic)
    return out


def load_file_list(path: Path, universe: FileUniverse = IMAGENET_VAL) -> tuple[str, ...]:
    """A named slice: a JSON list of file names, or one file name per line (``#`` comments)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise LabelFileError(f"{path}: expected a JSON list of file names")
    else:
        if not path.is_file():
            raise MissingArtefactError(f"slice file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LabelFileError(f"cannot read slice file {path} ({exc})") from None
        data = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        data = [ln for ln in data if ln]
    seen: set[str] = set()
    for name in data:
        _check_file_name(name, universe, path)
        if name in seen:
            raise LabelFileError(f"{path}: file {name!r} is listed twice (duplicate entry)")
        seen.add(name)
    if not data:
        raise LabelFileError(f"{path}: the slice names no files")
    return tuple(data)


def _category(value: Any, where: str) -> str:
    key = " ".join(str(value).lower().split()) if isinstance(value, str) else None
    if key not in CATEGORIES:
        known = sorted(set(CATEGORIES.values()))
        raise LabelFileError(
            f"{where}: 'failure category' is {value!r}; expected one of {', '.join(known)}"
        )
    return CATEGORIES[key]


def load_mistakes(
    path: Path, num_classes: int, universe: FileUniverse = IMAGENET_VAL
) -> pd.DataFrame:
    """Mistake metadata as a table indexed by file name: ``top_prediction`` (int),
    ``category`` and ``severity`` (categoricals, categories normalised)."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise LabelFileError(f"{path}: expected a JSON object {{file name: {{...}}}}")
    rows = []
    for name, entry in data.items():
        _check_file_name(name, universe, path)
        where = f"{path}: entry {name!r}"
        if not isinstance(entry, dict) or sorted(entry) != sorted(_MISTAKE_KEYS):
            raise LabelFileError(f"{where} is {entry!r}; expected the keys {_MISTAKE_KEYS}")
        top = entry["top_prediction"]
        if not _is_index(top) or not 0 <= top < num_classes:
            raise LabelFileError(
                f"{where}: top_prediction {top!r} is not a class index in [0, {num_classes})"
            )
        severity = entry["failure severity"]
        if severity not in SEVERITIES:
            raise LabelFileError(
                f"{where}: 'failure severity' is {severity!r}; expected one of "
                f"{', '.join(SEVERITIES)}"
            )
        rows.append((name, top, _category(entry["failure category"], where), severity))
    table = pd.DataFrame(rows, columns=["file", "top_prediction", "category", "severity"])
    table["category"] = pd.Categorical(table["category"], sorted(set(CATEGORIES.values())))
    table["severity"] = pd.Categorical(table["severity"], SEVERITIES, ordered=True)
    return table.set_index("file")


# -- matching eval-set samples -------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\\/]")


def file_names(ids: Sequence[str]) -> list[str]:
    """The file name of each sample id: its last path component."""
    return [_SEPARATORS.split(str(i))[-1] for i in ids]


def match_files(ids: Sequence[str], wanted: Mapping[str, Any] | Sequence[str]) -> np.ndarray:
    """(N,) bool: which samples' file names are keys (or members) of ``wanted``."""
    keys = wanted if isinstance(wanted, Mapping) else set(wanted)
    return np.fromiter((n in keys for n in file_names(ids)), dtype=bool, count=len(ids))
