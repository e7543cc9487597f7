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
from collections.abc import Callable
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
    "baseline",
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
    num_workers: int | None = None  # None: file-backed eval sets pick (vcheck.data.evalset)
    # Background processes for the built-in verifiers (None: one per core; 0: in the run's own
    # process), see vcheck.soundness.pool.
    verifier_workers: int | None = None
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    eval_sets: dict[str, Path] = field(default_factory=dict)
    verifiers: tuple[str, ...] = ()
    soundness_dir: Path | None = None
    # The first N instances of each kind (counterexample, clean) per soundness network; 0 runs
    # every instance. See vcheck.soundness.runner.select_instances for why 3.
    soundness_instances: int = 3
    baseline: Path | None = None
    # eval-set name -> vcheck.data.metadata.MetadataSpec (per-sample attributes for fairness)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            _validate(f.name, getattr(self, f.name))

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
_OPTIONAL = {f.name for f in fields(VcheckConfig) if f.default is None}  # None means "unset"
_BOOLS = ("strict", "no_cache")


def _fail(name: str, value: Any, expected: str) -> None:
    raise InvalidArgument(f"{name}={value!r}: expected {expected}")


def _check_path(name: str, value: Any) -> None:
    if not isinstance(value, Path):
        _fail(name, value, "a path")


def _check_model(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        _fail(name, value, "a model name, checkpoint path or package.module:factory")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(name, value, "true or false")


def _check_confidence(name: str, value: Any) -> None:
    if not isinstance(value, float) or not 0.5 <= value < 1:
        _fail(name, value, "a float in [0.5, 1), e.g. 0.95")


def _check_eval_sets(name: str, value: Any) -> None:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, Path) for k, v in value.items()
    )
    if not ok:
        _fail(name, value, 'a table of name = "path/to/image/folder"')


def _check_verifiers(name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        _fail(name, value, "a list of verifier specs")
    from vcheck.soundness.runner import check_verifier_spec  # lazy: imports torch

    for spec in value:
        try:
            check_verifier_spec(spec)
        except InvalidArgument as exc:
            raise InvalidArgument(f"verifier {spec!r}: {exc}") from None


def _check_instance_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(name, value, 'a positive integer or "all"')


def _check_soundness_dir(name: str, value: Any) -> None:
    _check_path(name, value)
    from vcheck.soundness.runner import check_soundness_dir

    try:
        check_soundness_dir(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{name}: {exc}") from None


_CHECKS: dict[str, Callable[[str, Any], None]] = {
    **dict.fromkeys(_PATH_KEYS, _check_path),
    "model": _check_model,
    "gate": lambda n, v: _check_choice(n, v, GATES),
    "device": lambda n, v: _check_choice(n, v, DEVICES),
    "seed": lambda n, v: _check_int(n, v, minimum=0),
    "num_workers": lambda n, v: _check_int(n, v, minimum=0),
    "verifier_workers": lambda n, v: _check_int(n, v, minimum=0),
    "batch_size": lambda n, v: _check_int(n, v, minimum=1),
    "max_samples": lambda n, v: _check_int(n, v, minimum=1),
    "soundness_instances": _check_instance_count,
    # intervals.MIN_RESAMPLES (not imported: scipy.stats would slow every pytest start)
    "bootstrap_resamples": lambda n, v: _check_int(n, v, minimum=100),
    **dict.fromkeys(_BOOLS, _check_bool),
    "confidence": _check_confidence,
    "eval_sets": _check_eval_sets,
    "verifiers": _check_verifiers,
    "soundness_dir": _check_soundness_dir,
}


def _validate(name: str, value: Any) -> None:
    """Check one setting's type and range; the message starts with ``name=value``."""
    if value is None and name in _OPTIONAL:
        return
    check = _CHECKS.get(name)
    if check is not None:
        check(name, value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidArgument(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name}={value!r}: expected an integer >= {minimum}")


def _coerce(key: str, value: Any, base: Path) -> Any:
    """Turn a file value into the field's type; relative paths are relative to ``base``."""
    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value:
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
    if key == "soundness_instances":  # 0 stands for "all" inside, not in a file
        if value == "all":
            return 0
        if value == 0:
            _fail(key, value, 'a positive integer or "all"')
    if key == "confidence" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def read_toml_settings(path: Path, table: str | None = None) -> dict[str, Any]:
    """Settings from a TOML file (or one of its tables), validated and coerced.

    Every error names the file (and table) the bad value came from.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(f"config file {path} is a directory; pass a .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path} does not exist") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not valid TOML: {exc}") from None
    if table:
        for part in table.split("."):
            data = data.get(part, {})
    out = {}
    where = f"[{table}] of {path}" if table else str(path)
    for key, value in data.items():
        norm = key.replace("-", "_")
        if norm not in KEYS:
            _unknown_key(key, where)
        try:
            out[norm] = _coerce(norm, value, path.resolve().parent)
            _validate(norm, out[norm])
        except InvalidArgument as exc:
            raise InvalidArgument(f"{exc} (in {where})") from None
    return out


def _unknown_key(key: str, where: str) -> None:
    from vcheck.profiles import SUITE_TABLES  # lazy: profiles imports checks, not config

    if key in SUITE_TABLES:
        raise InvalidArgument(
            f"[{key}] in {where} is a threshold-profile table, not a vcheck setting: pass "
            "this file with --profile (settings go in --vcheck-config or [tool.vcheck])"
        )
    raise UnknownNameError(
        "config key", key, KEYS, f"(in {where}; allowed keys: {', '.join(KEYS)})"
    )


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
        if value is None or (value is False and key in _BOOLS):
            continue
        if key in _PATH_KEYS:
            value = Path(value).expanduser().resolve()
        elif key == "verifiers":
            value = tuple(value)
        try:
            _validate(key, value)
        except InvalidArgument as exc:
            flag = "verifier" if key == "verifiers" else key.replace("_", "-")
            raise InvalidArgument(f"{exc} (from --{flag})") from None
        merged[key] = value
    return replace(VcheckConfig(), **merged)
