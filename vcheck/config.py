"""VcheckConfig: every setting of a run, validated once, from one place.

Precedence, lowest first: defaults, ``[tool.vcheck]`` in the rootdir's pyproject.toml, the
file given by ``--vcheck-config``, then command-line options. Unknown keys and bad values are
:class:`~vcheck.errors.InvalidArgument` naming the key, which the plugin reports as a usage
error before any test runs. Relative paths in a file are relative to that file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vcheck.errors import InvalidArgument, UnknownNameError

DEFAULT_MODEL = "fmnist_cnn"  # the bundled zoo model trained on the embedded data
GATES = ("point", "lower", "upper")
DEVICES = ("auto", "cpu", "cuda")
_PATH_KEYS = (
    "weights",
    "data_root",
    "report",
    "metrics_json",
    "cache_dir",
    "profile",
    "soundness_dir",
)


def default_cache_dir() -> Path:
    env = os.environ.get("VCHECK_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vcheck"


@dataclass(frozen=True)
class VcheckConfig:
    """Settings of one vcheck run; see ``pytest --help`` (group "vcheck") for each."""

    model: str = DEFAULT_MODEL
    weights: Path | None = None
    device: str = "auto"
    data_root: Path | None = None
    max_samples: int | None = None
    seed: int = 0
    gate: str = "point"
    report: Path | None = None
    metrics_json: Path | None = None
    strict: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)
    no_cache: bool = False
    profile: Path | None = None
    batch_size: int = 256
    num_workers: int = 0
    bootstrap_resamples: int = 200
    confidence: float = 0.95
    eval_sets: dict[str, Path] = field(default_factory=dict)
    verifiers: tuple[str, ...] = ()
    soundness_dir: Path | None = None
    # eval-set name -> vcheck.data.metadata.MetadataSpec (per-sample attributes for fairness)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("gate", self.gate, GATES)
        _check_choice("device", self.device, DEVICES)
        _check_int("seed", self.seed, minimum=0)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("num_workers", self.num_workers, minimum=0)
        _check_int("bootstrap_resamples", self.bootstrap_resamples, minimum=10)
        if self.max_samples is not None:
            _check_int("max_samples", self.max_samples, minimum=1)
        if not isinstance(self.confidence, float) or not 0.5 <= self.confidence < 1:
            raise InvalidArgument(
                f"confidence={self.confidence!r}: expected a float in [0.5, 1), e.g. 0.95"
            )

    @property
    def model_slug(self) -> str:
        """The model name made safe for a file name (paths and module:factory included)."""
        name = Path(self.model).stem if os.sep in self.model else self.model
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"

    @property
    def report_path(self) -> Path:
        return self.report or Path("reports") / f"{self.model_slug}.html"

    @property
    def metrics_json_path(self) -> Path:
        return self.metrics_json or self.report_path.with_suffix(".metrics.json")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings, for the report."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Path):
                v = str(v)
            elif isinstance(v, dict):
                v = {k: str(p) for k, p in v.items()}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


KEYS = tuple(f.name for f in fields(VcheckConfig))


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidArgument(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name}={value!r}: expected an integer >= {minimum}")


def _coerce(key: str, value: Any, base: Path) -> Any:
    """Turn a file value into the field's type; relative paths are relative to ``base``."""
    if key in _PATH_KEYS:
        if not isinstance(value, str):
            raise InvalidArgument(f"{key}={value!r}: expected a path string")
        return (base / Path(value).expanduser()).resolve()
    if key == "eval_sets":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidArgument(
                f'eval_sets={value!r}: expected a table of name = "path/to/image/folder"'
            )
        return {k: (base / Path(v).expanduser()).resolve() for k, v in value.items()}
    if key == "metadata":
        from vcheck.data.metadata import parse_metadata_setting

        return parse_metadata_setting(value, base)
    if key == "verifiers":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"verifiers={value!r}: expected a list of verifier names")
        return tuple(value)
    if key == "confidence" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if key in ("strict", "no_cache") and not isinstance(value, bool):
        raise InvalidArgument(f"{key}={value!r}: expected true or false")
    return value


def read_toml_settings(path: Path, table: str | None = None) -> dict[str, Any]:
    """Settings from a TOML file (or one of its tables), validated and coerced."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not valid TOML: {exc}") from None
    if table:
        for part in table.split("."):
            data = data.get(part, {})
    out = {}
    where = f"[{table}] in {path}" if table else str(path)
    for key, value in data.items():
        norm = key.replace("-", "_")
        if norm not in KEYS:
            raise UnknownNameError(
                "config key", key, KEYS, f"(in {where}; allowed keys: {', '.join(KEYS)})"
            )
        out[norm] = _coerce(norm, value, Path(path).resolve().parent)
    return out


def build_config(
    cli: dict[str, Any], config_file: Path | None = None, pyproject: Path | None = None
) -> VcheckConfig:
    """Merge defaults, pyproject ``[tool.vcheck]``, ``config_file`` and ``cli`` (None = unset)."""
    merged: dict[str, Any] = {}
    if pyproject is not None and pyproject.is_file():
        merged.update(read_toml_settings(pyproject, "tool.vcheck"))
    if config_file is not None:
        merged.update(read_toml_settings(config_file))
    for key, value in cli.items():
        if key not in KEYS:
            raise UnknownNameError("option", key, KEYS)
        if value is None or (value is False and key in ("strict", "no_cache")):
            continue
        if key in _PATH_KEYS:
            value = Path(value).expanduser().resolve()
        elif key == "verifiers":
            value = tuple(value)
        merged[key] = value
    return replace(VcheckConfig(), **merged)
