"""Metadata tables: per-sample attributes (region, age group, camera...) for subgroup checks.

An eval set carries one table, configured in the vcheck settings (``vcheck.toml`` or
``[tool.vcheck]``), relative paths being relative to that file::

    metadata = { fmnist_test = "meta/fmnist_test.csv" }        # short form

    [metadata.imagenet_val]                                     # full form
    path = "meta/imagenet_val.parquet"
    key = "file_name"            # column naming the samples (default: the first of id,
                                 # sample_id, file, file_name, filename, path)
    attributes = ["region", "age"]   # default: every other column
    bins = { age = [18, 40, 65] }    # numeric columns: bin edges, or a number of quantile bins

A row belongs to the sample whose id equals its key, or else whose file name does (last path
component, extension ignored, folders compared where both have them): a table keyed by
``ILSVRC2012_val_00000001.JPEG`` fits an ImageNet folder in any layout or format. Rows for
samples outside the eval set are ignored (any subset works); a sample without a row is an
error.

Each attribute becomes a column of group labels (strings). Strings, booleans and integer
columns with at most :data:`MAX_INTEGER_GROUPS` values are categorical; any other numeric
column needs ``bins``. Every problem is a usage error naming the file and the column or id,
raised before any test runs: an unreadable file, no key column, duplicate or empty keys, an
empty cell, a numeric column without bins, a bin that holds no row, a sample without a row.

Public names: MetadataSpec, MetadataTable, parse_metadata_setting, read_metadata,
attach_metadata, attributes_of, check_metadata.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError

if TYPE_CHECKING:
    import pandas as pd

    from vcheck.config import VcheckConfig
    from vcheck.data.evalset import EvalSet

KEY_COLUMNS = ("id", "sample_id", "file", "file_name", "filename", "path")
MAX_INTEGER_GROUPS = 20
# Columns of EvalSet.metadata and the image-derived slices: an attribute may not reuse them.
RESERVED = ("id", "label", "class_name", "lighting", "object_size", "object_brightness")
_SPEC_KEYS = ("path", "key", "attributes", "bins")
_READERS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class MetadataSpec:
    """Where an eval set's metadata table is and how to read it."""

    path: Path
    key: str | None = None
    attributes: tuple[str, ...] | None = None
    bins: tuple[tuple[str, tuple[float, ...] | int], ...] = ()

    def __str__(self) -> str:  # settings in the report and metrics JSON
        extra = [f"key={self.key}"] if self.key else []
        if self.attributes:
            extra.append("attributes=" + ",".join(self.attributes))
        extra += [f"bins.{name}={value}" for name, value in self.bins]
        return str(self.path) + (f" ({'; '.join(extra)})" if extra else "")


def parse_metadata_setting(value: Any, base: Path) -> dict[str, MetadataSpec]:
    """The ``metadata`` setting: eval-set name -> path, or -> table of path, key, attributes,
    bins. Relative paths are relative to ``base`` (the settings file's folder)."""
    if not isinstance(value, dict):
        raise InvalidArgument(
            f'metadata={value!r}: expected a table of eval-set name = "table.csv" '
            '(or = { path = "table.csv", key = "id", bins = { age = [18, 65] } })'
        )
    return {name: _spec(name, entry, base) for name, entry in value.items()}


def _spec(name: str, entry: Any, base: Path) -> MetadataSpec:
    at = f"metadata.{name}"
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise InvalidArgument(
            f'{at}={entry!r}: expected "table.csv" or a table with path = "table.csv"'
        )
    unknown = [k for k in entry if k not in _SPEC_KEYS]
    if unknown:
        raise InvalidArgument(
            f"{at}.{unknown[0]}: unknown key; allowed keys: {', '.join(_SPEC_KEYS)}"
        )
    key = entry.get("key")
    if key is not None and not isinstance(key, str):
        raise InvalidArgument(f"{at}.key={key!r}: expected a column name")
    attributes = entry.get("attributes")
    if attributes is not None and (
        not isinstance(attributes, list)
        or not attributes
        or not all(isinstance(a, str) for a in attributes)
    ):
        raise InvalidArgument(f"{at}.attributes={attributes!r}: expected a list of column names")
    bins = entry.get("bins", {})
    if not isinstance(bins, dict):
        raise InvalidArgument(f"{at}.bins={bins!r}: expected a table of column = [edges]")
    parsed_bins = []
    for column, b in bins.items():
        parsed_bins.append((column, _bin_setting(f"{at}.bins.{column}", b)))
    return MetadataSpec(
        path=(base / Path(entry["path"]).expanduser()).resolve(),
        key=key,
        attributes=tuple(attributes) if attributes else None,
        bins=tuple(parsed_bins),
    )


def _bin_setting(at: str, value: Any) -> tuple[float, ...] | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 2:
            raise InvalidArgument(f"{at}={value}: expected at least 2 quantile bins")
        return value
    ok = (
        isinstance(value, list)
        and value
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        and all(a < b for a, b in itertools.pairwise(value))
    )
    if not ok:
        raise InvalidArgument(
            f"{at}={value!r}: expected increasing bin edges (e.g. [18, 40, 65]) or a number "
            "of quantile bins (e.g. 4)"
        )
    return tuple(float(v) for v in value)


# -- reading and validating a table ------------------------------------------------------------


@dataclass(frozen=True)
class MetadataTable:
    """A validated table: one key per row and one column of group labels per attribute."""

    path: Path
    key_column: str
    keys: tuple[str, ...]
    groups: pd.DataFrame  # one row per table row, str labels
    orders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group order per column

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.groups.columns)


def read_metadata(spec: MetadataSpec) -> MetadataTable:
    """Read and validate ``spec``'s table (memoised while the file is unchanged)."""
    try:
        st = spec.path.stat()
    except FileNotFoundError:
        raise MissingArtefactError(
            f"metadata table {spec.path} does not exist; fix the path in the metadata setting"
        ) from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read metadata table {spec.path} ({exc})") from None
    if not spec.path.is_file():
        raise InvalidArgument(f"metadata table {spec.path} is not a file")
    return _read_cached(spec, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read_cached(spec: MetadataSpec, _mtime: int, _size: int) -> MetadataTable:
    frame = _load_frame(spec.path)
    where = f"metadata table {spec.path}"
    key = spec.key or next((c for c in KEY_COLUMNS if c in frame.columns), None)
    if key is None or key not in frame.columns:
        wanted = repr(spec.key) if spec.key else "named " + ", ".join(KEY_COLUMNS)
        raise InvalidArgument(
            f"{where} has no key column {wanted} (columns: {_names(frame.columns)}); name the "
            'column of sample ids or file names with key = "COLUMN" in the metadata setting'
        )
    keys = frame[key]
    blank = keys.isna() | (keys.astype(str).str.strip() == "")
    if blank.any():
        raise InvalidArgument(f"{where}: key column {key!r} is empty in row {_row(blank)}")
    keys = keys.astype(str).str.strip()
    dup = keys.duplicated(keep=False)
    if dup.any():
        first = keys[dup].iloc[0]
        rows = [str(i + 2) for i in np.flatnonzero((keys == first).to_numpy())[:3]]
        raise InvalidArgument(
            f"{where}: duplicate id {first!r} in {key!r} (rows {', '.join(rows)}); keep one "
            "row per sample"
        )
    attributes = spec.attributes or tuple(str(c) for c in frame.columns if c != key)
    if not attributes:
        raise InvalidArgument(f"{where} has no attribute column besides the key {key!r}")
    bins = dict(spec.bins)
    for column in list(attributes) + list(bins):
        if column not in frame.columns:
            raise InvalidArgument(
                f"{where} has no column {column!r} (columns: {_names(frame.columns)}); fix "
                "attributes or bins in the metadata setting"
            )
    for column in bins:
        if column not in attributes:
            raise InvalidArgument(f"{where}: bins for {column!r}, which is not an attribute")
    groups, orders = {}, {}
    for column in attributes:
        if column in RESERVED or column == key:
            raise InvalidArgument(
                f"{where}: attribute column {column!r} clashes with a built-in name "
                f"({', '.join(RESERVED)}); rename it"
            )
        labels, order = _groups(frame[column], column, bins.get(column), keys, where)
        groups[column], orders[column] = labels, order
    import pandas as pd

    return MetadataTable(
        spec.path, key, tuple(keys), pd.DataFrame(groups, index=range(len(frame))), orders
    )


def _load_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise InvalidArgument(
            f"metadata table {path}: unknown format {path.suffix!r}; use .csv, .tsv or .parquet"
        )
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:  # only empty cells are missing: "NA" is a region, not a missing value
            frame = pd.read_csv(
                path, sep="\t" if kind == "tsv" else ",", keep_default_na=False, na_values=[""]
            )
    except ImportError:
        raise InvalidArgument(
            f"metadata table {path}: reading Parquet needs pyarrow, which is not installed; "
            "pip install pyarrow, or save the table as CSV"
        ) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        text = str(exc).strip().splitlines()
        raise CorruptArtefactError(
            f"cannot read metadata table {path}: {text[0] if text else type(exc).__name__}"
        ) from None
    if frame.empty:
        raise InvalidArgument(f"metadata table {path} has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _groups(
    values: pd.Series, column: str, bins: tuple[float, ...] | int | None, keys, where: str
) -> tuple[pd.Series, tuple[str, ...]]:
    """Group labels of one attribute column, and their order."""
    import pandas as pd

    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise InvalidArgument(
            f"{where}: column {column!r} is empty for id {keys.iloc[i]!r} (row {i + 2}); every "
            "sample needs a group (write e.g. 'unknown'), or leave the column out of attributes"
        )
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if bins is not None:
        if not numeric:
            raise InvalidArgument(
                f"{where}: bins for column {column!r}, which is not numeric; remove its bins"
            )
        return _binned(values.astype(float), column, bins, where)
    distinct = values.nunique()
    if numeric and not (pd.api.types.is_integer_dtype(values) and distinct <= MAX_INTEGER_GROUPS):
        raise InvalidArgument(
            f"{where}: column {column!r} is numeric with {distinct} distinct values, not "
            f"categorical; add bins = {{ {column} = [EDGES] }} (or a number of quantile bins) "
            "to its metadata setting, or leave it out of attributes"
        )
    if distinct > MAX_INTEGER_GROUPS and distinct > len(values) / 2:
        raise InvalidArgument(
            f"{where}: column {column!r} has {distinct} distinct values in {len(values)} rows, "
            "so it is not a group attribute; list the attribute columns with attributes = [...]"
        )
    labels = values.astype(str).str.strip()
    return labels, tuple(sorted(labels.unique(), key=_natural))


def _binned(
    values: pd.Series, column: str, bins: tuple[float, ...] | int, where: str
) -> tuple[pd.Series, tuple[str, ...]]:
    import pandas as pd

    from vcheck.functional.image_slices import assign_bins

    if isinstance(bins, int):
        edges = tuple(np.unique(np.quantile(values.to_numpy(), np.linspace(0, 1, bins + 1))))
        inner = edges[1:-1]
        if len(inner) != bins - 1:
            raise InvalidArgument(
                f"{where}: column {column!r} cannot be cut into {bins} quantile bins (too many "
                "equal values); give bin edges instead"
            )
    else:
        inner = bins
    names = bin_labels(inner)
    codes = assign_bins(values.to_numpy(), inner)
    counts = np.bincount(codes, minlength=len(names))
    if (counts == 0).any():
        empty = names[int(np.flatnonzero(counts == 0)[0])]
        raise InvalidArgument(
            f"{where}: bin {empty!r} of column {column!r} holds no rows; change its bin edges"
        )
    return pd.Series([names[c] for c in codes], index=values.index), names


def bin_labels(edges: Sequence[float]) -> tuple[str, ...]:
    """Readable labels of the bins cut by ``edges``.

    >>> bin_labels([18, 40.5])
    ('<18', '18-40.5', '>=40.5')
    """
    e = [f"{v:g}" for v in edges]
    return (f"<{e[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(e)), f">={e[-1]}")


def _natural(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _names(columns) -> str:
    return ", ".join(repr(str(c)) for c in columns)


def _row(mask) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2  # 1-based, after the header line


# -- matching rows to samples ------------------------------------------------------------------


def _file_key(name: str) -> tuple[str, ...]:
    """Path components of ``name``, the last without its extension."""
    parts = [p for p in str(name).replace("\\", "/").split("/") if p and p != "."]
    if not parts:
        return ()
    last = parts[-1]
    if "." in last[1:]:
        last = last.rsplit(".", 1)[0]
    return (*parts[:-1], last)


def _agree(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return n > 0 and a[-n:] == b[-n:]


def match_rows(sample_ids: Sequence[str], keys: Sequence[str], *, source: str) -> np.ndarray:
    """For each sample, the table row that names it (by id, else by file name), -1 if none.

    Raises:
        InvalidArgument: one row fits several samples, or several rows fit one sample.
    """
    exact = {k: r for r, k in enumerate(keys)}
    rows = np.full(len(sample_ids), -1, dtype=np.int64)
    by_stem: dict[str, list[int]] | None = None
    used: dict[int, int] = {}
    for i, sid in enumerate(sample_ids):
        r = exact.get(sid)
        if r is None:
            if by_stem is None:
                by_stem = {}
                for row, k in enumerate(keys):
                    fk = _file_key(k)
                    by_stem.setdefault(fk[-1] if fk else "", []).append(row)
            sk = _file_key(sid)
            candidates = by_stem.get(sk[-1] if sk else "", ())
            fits = [row for row in candidates if _agree(sk, _file_key(keys[row]))]
            if len(fits) > 1:
                names = ", ".join(repr(keys[row]) for row in fits[:3])
                raise InvalidArgument(
                    f"{source}: rows {names} all name the sample {sid!r}; keep one, or name "
                    "it by its path"
                )
            r = fits[0] if fits else None
        if r is None:
            continue
        if r in used:
            raise InvalidArgument(
                f"{source}: row {keys[r]!r} fits the samples {sample_ids[used[r]]!r} and "
                f"{sid!r}; name them by their paths (e.g. 'class_folder/{keys[r]}')"
            )
        used[r] = i
        rows[i] = r
    return rows


# -- eval sets -----------------------------------------------------------------------------------


def check_metadata(config: VcheckConfig, eval_set_names: Sequence[str]) -> None:
    """Validate every configured table before any data is loaded (usage errors)."""
    from vcheck.errors import UnknownNameError

    for name, spec in config.metadata.items():
        if name not in eval_set_names:
            raise UnknownNameError(
                "eval set",
                name,
                eval_set_names,
                f"(in the metadata setting; this model's eval sets: {', '.join(eval_set_names)})",
            )
        read_metadata(spec)


def attach_metadata(eval_set: EvalSet, spec: MetadataSpec | None) -> EvalSet:
    """Give ``eval_set`` its attributes (``eval_set.extra["attributes"]``, one row per sample,
    indexed by sample id); a sample without a row is a usage error."""
    if spec is None:
        return eval_set
    import pandas as pd

    table = read_metadata(spec)
    source = f"metadata table {table.path}"
    rows = match_rows(eval_set.ids, table.keys, source=source)
    missing = np.flatnonzero(rows < 0)
    if len(missing):
        shown = ", ".join(repr(eval_set.ids[i]) for i in missing[:3])
        raise InvalidArgument(
            f"{source} has no row for {len(missing)} of the {len(eval_set)} samples of "
            f"{eval_set.name} (e.g. {shown}); add rows keyed by sample id or file name in "
            f"column {table.key_column!r}"
        )
    frame = table.groups.iloc[rows].set_axis(pd.Index(list(eval_set.ids), name="id"))
    for column, order in table.orders.items():
        frame[column] = pd.Categorical(frame[column], categories=list(order))
    eval_set.extra["attributes"] = frame
    eval_set.extra["attribute_source"] = str(table.path)
    return eval_set


def attributes_of(eval_set: EvalSet) -> pd.DataFrame | None:
    """The eval set's attribute table (index: sample ids), or None without metadata."""
    return eval_set.extra.get("attributes")


def attribute_names(spec: MetadataSpec | None) -> tuple[str, ...]:
    """The attribute columns of a configured table (read and validated)."""
    return () if spec is None else read_metadata(spec).attributes
