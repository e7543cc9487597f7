"""vcheck.config: precedence, validation of keys and values, paths and derived names."""

import json
from pathlib import Path

import pytest

from vcheck.config import VcheckConfig, build_config, default_cache_dir
from vcheck.errors import InvalidArgument, UnknownNameError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def pyproject(tmp_path):
    return write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.vcheck]\nseed = 1\ngate = "lower"\n'
        "batch_size = 32\nmax-samples = 100\n",
    )


@pytest.fixture
def config_file(tmp_path):
    return write(tmp_path / "conf" / "vcheck.toml", 'seed = 2\ngate = "upper"\nstrict = true\n')


def test_defaults(tmp_path):
    config = build_config({}, None, tmp_path / "missing-pyproject.toml")
    assert config == VcheckConfig()
    assert config.model == "fmnist_cnn"
    assert config.gate == "point" and config.seed == 0 and config.device == "auto"
    assert config.max_samples is None and config.strict is False


def test_precedence_defaults_pyproject_file_cli(pyproject, config_file):
    only_pyproject = build_config({}, None, pyproject)
    assert (only_pyproject.seed, only_pyproject.gate, only_pyproject.batch_size) == (
        1,
        "lower",
        32,
    )
    assert only_pyproject.max_samples == 100  # "max-samples" is accepted for max_samples

    with_file = build_config({}, config_file, pyproject)
    assert (with_file.seed, with_file.gate, with_file.strict) == (2, "upper", True)
    assert with_file.batch_size == 32  # not in the file: pyproject still applies

    with_cli = build_config({"seed": 3, "gate": None, "model": "rn18"}, config_file, pyproject)
    assert with_cli.seed == 3  # the command line wins
    assert with_cli.gate == "upper"  # None on the command line means "not given"
    assert with_cli.model == "rn18"
    assert with_cli.batch_size == 32 and with_cli.max_samples == 100
    assert with_cli.bootstrap_resamples == VcheckConfig().bootstrap_resamples


def test_cli_false_flags_do_not_override_a_file(config_file):
    config = build_config({"strict": False, "no_cache": False}, config_file)
    assert config.strict is True
    assert build_config({"strict": True}).strict is True


def test_pyproject_without_vcheck_table_gives_defaults(tmp_path):
    path = write(tmp_path / "pyproject.toml", "[tool.ruff]\nline-length = 100\n")
    assert build_config({}, None, path) == VcheckConfig()


def test_unknown_key_in_pyproject_names_it_and_suggests(tmp_path):
    path = write(tmp_path / "pyproject.toml", "[tool.vcheck]\nmax_sample = 10\n")
    with pytest.raises(UnknownNameError) as info:
        build_config({}, None, path)
    message = str(info.value)
    assert "'max_sample'" in message
    assert "Did you mean 'max_samples'" in message
    assert str(path) in message
    assert isinstance(info.value, KeyError)  # catchable as the builtin too


def test_unknown_key_in_config_file(tmp_path):
    path = write(tmp_path / "vcheck.toml", "gates = 'lower'\n")
    with pytest.raises(UnknownNameError, match=r"'gates'.*Did you mean 'gate'"):
        build_config({}, path)


def test_unknown_cli_key():
    with pytest.raises(UnknownNameError, match=r"'sead'.*Did you mean 'seed'"):
        build_config({"sead": 1})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('gate = "fast"', "gate"),
        ('device = "tpu"', "device"),
        ("seed = -1", "seed"),
        ("seed = 1.5", "seed"),
        ("seed = true", "seed"),
        ("max_samples = 0", "max_samples"),
        ('strict = "yes"', "strict"),
        ("no_cache = 1", "no_cache"),
        ("batch_size = 0", "batch_size"),
        ("confidence = 1", "confidence"),
        ("report = 3", "report"),
        ("eval_sets = { a = 1 }", "eval_sets"),
    ],
)
def test_bad_values_in_a_file_name_the_key(tmp_path, text, key):
    path = write(tmp_path / "vcheck.toml", text + "\n")
    with pytest.raises(InvalidArgument) as info:
        build_config({}, path)
    assert str(info.value).startswith(key)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("cli", "key"),
    [({"gate": "both"}, "gate"), ({"device": "gpu"}, "device"), ({"seed": -3}, "seed")],
)
def test_bad_values_on_the_command_line_name_the_key(cli, key):
    with pytest.raises(InvalidArgument, match=f"^{key}="):
        build_config(cli)


def test_bad_toml_names_the_file(tmp_path):
    path = write(tmp_path / "vcheck.toml", "seed = = 3\n")
    with pytest.raises(InvalidArgument, match="not valid TOML") as info:
        build_config({}, path)
    assert str(path) in str(info.value)
    bad_pyproject = write(tmp_path / "pyproject.toml", "[tool.vcheck\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        build_config({}, None, bad_pyproject)


def test_missing_config_file(tmp_path):
    with pytest.raises(InvalidArgument, match="does not exist"):
        build_config({}, tmp_path / "nope.toml")


def test_relative_paths_in_a_file_resolve_relative_to_that_file(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path / "ci" / "vcheck.toml",
        'report = "out/r.html"\nprofile = "../profiles/p.toml"\ndata_root = "/abs/data"\n'
        'eval_sets = { extra = "sets/extra" }\n',
    )
    config = build_config({}, path)
    assert config.report == tmp_path / "ci" / "out" / "r.html"
    assert config.profile == tmp_path / "profiles" / "p.toml"
    assert config.data_root == Path("/abs/data")
    assert config.eval_sets == {"extra": tmp_path / "ci" / "sets" / "extra"}


def test_relative_paths_in_pyproject_resolve_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "proj" / "pyproject.toml", '[tool.vcheck]\ncache-dir = "cache"\n')
    assert build_config({}, None, path).cache_dir == tmp_path / "proj" / "cache"


def test_relative_cli_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = build_config({"report": "r/x.html", "weights": "w.pt"})
    assert config.report == tmp_path / "r" / "x.html"
    assert config.weights == tmp_path / "w.pt"


def test_report_and_metrics_json_default_paths():
    config = VcheckConfig(model="convnext_t")
    assert config.report_path == Path("reports") / "convnext_t.html"
    assert config.metrics_json_path == Path("reports") / "convnext_t.metrics.json"
    custom = VcheckConfig(report=Path("/ci/out/gate.html"))
    assert custom.metrics_json_path == Path("/ci/out/gate.metrics.json")
    both = VcheckConfig(report=Path("/a.html"), metrics_json=Path("/b/m.json"))
    assert both.metrics_json_path == Path("/b/m.json")


@pytest.mark.parametrize(
    ("model", "slug"),
    [
        ("convnext_t", "convnext_t"),
        ("/ckpts/run 7/best model.pt", "best_model"),
        ("my_pkg.models:build_net", "my_pkg.models_build_net"),
    ],
)
def test_model_slug_is_safe_for_file_names(model, slug):
    config = VcheckConfig(model=model)
    assert config.model_slug == slug
    assert "/" not in config.report_path.name and ":" not in config.report_path.name


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VCHECK_CACHE_DIR", str(tmp_path / "vc"))
    assert default_cache_dir() == tmp_path / "vc"
    assert VcheckConfig().cache_dir == tmp_path / "vc"
    monkeypatch.delenv("VCHECK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vcheck"


def test_confidence_from_a_file_is_a_float_in_range(tmp_path):
    path = write(tmp_path / "c.toml", "confidence = 0.9\n")
    assert build_config({}, path).confidence == 0.9
    with pytest.raises(InvalidArgument, match="confidence"):
        VcheckConfig(confidence=0.3)


def test_as_dict_is_json_ready(tmp_path):
    config = VcheckConfig(report=tmp_path / "r.html", eval_sets={"x": tmp_path / "x"})
    d = json.loads(json.dumps(config.as_dict()))
    assert d["report"] == str(tmp_path / "r.html")
    assert d["eval_sets"] == {"x": str(tmp_path / "x")}
    assert d["gate"] == "point"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model = 5", "model=5: expected a model name"),
        ('model = ""', "model='': expected a model name"),
        ("verifiers = [1]", "verifiers=[1]"),
        ("weights = 3", "weights=3: expected a path string"),
        ('cache_dir = ""', "cache_dir='': expected a path string"),
        ("bootstrap_resamples = 50", "bootstrap_resamples=50: expected an integer >= 100"),
        ("num_workers = -1", "num_workers=-1"),
    ],
)
def test_bad_values_in_a_file_name_the_file(tmp_path, text, needle):
    path = write(tmp_path / "vcheck.toml", text + "\n")
    with pytest.raises(InvalidArgument) as info:
        build_config({}, path)
    assert needle in str(info.value) and f"(in {path})" in str(info.value)


def test_the_fewest_resamples_allowed_is_the_intervals_minimum():
    from vcheck.functional.intervals import MIN_RESAMPLES

    VcheckConfig(bootstrap_resamples=MIN_RESAMPLES)
    with pytest.raises(InvalidArgument, match=f">= {MIN_RESAMPLES}$"):
        VcheckConfig(bootstrap_resamples=MIN_RESAMPLES - 1)
    assert VcheckConfig().bootstrap_resamples >= 1000


def test_bad_values_in_pyproject_name_its_table(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[tool.vcheck]\ngate = "fast"\n')
    with pytest.raises(InvalidArgument, match=r"gate='fast'.*\(in \[tool.vcheck\] of .*pyproject"):
        build_config({}, None, path)


def test_bad_values_on_the_command_line_name_the_flag():
    with pytest.raises(InvalidArgument, match=r"\(from --max-samples\)"):
        build_config({"max_samples": 0})


def test_a_config_file_that_is_a_directory_or_not_utf8_is_one_line(tmp_path):
    with pytest.raises(InvalidArgument, match="is a directory"):
        build_config({}, tmp_path)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'model = "caf\xe9"\n')
    with pytest.raises(InvalidArgument, match="is not UTF-8 text"):
        build_config({}, latin1)


def test_a_profile_passed_as_config_points_to_profile(tmp_path):
    path = write(tmp_path / "p.toml", "[accuracy]\ntop1 = { min = 0.9 }\n")
    with pytest.raises(
        InvalidArgument,
        match=r"threshold-profile table.*pass this file with "
        r"--profile",
    ):
        build_config({}, path)
