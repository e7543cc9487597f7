"""VNN-COMP files of the soundness suite: VNN-LIB properties, benchmark folders, ONNX export,
external verifiers (exact result parsing, subprocess handling), counterexample validation and
results CSVs. Small seeded networks and hand-made instances; fake verifiers are tiny Python
scripts written into tmp_path."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError
from vcheck.soundness import arch
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.soundness.vnncomp import (
    instance_files,
    onnx_logits,
    read_benchmark,
    write_benchmark,
)
from vcheck.soundness.vnnlib import Property, format_bound, read_property, write_property
from vcheck.verify.external import (
    ExternalVerifier,
    parse_result,
    read_results_csv,
    validate_counterexample,
)

EPS = 0.02
MLP_SPEC = [
    {"type": "flatten"},
    {"type": "linear", "in": 10, "out": 16},
    {"type": "relu"},
    {"type": "linear", "in": 16, "out": 16},
    {"type": "relu"},
    {"type": "linear", "in": 16, "out": 2},
]
CNN_SPEC = [
    {"type": "conv", "in": 3, "out": 4, "kernel": 3, "stride": 1, "padding": 1},
    {"type": "batchnorm2d", "channels": 4},
    {"type": "relu"},
    {"type": "avgpool", "kernel": 2, "stride": 2},
    {"type": "tanh"},
    {"type": "flatten"},
    {"type": "linear", "in": 16, "out": 8},
    {"type": "sigmoid"},
    {"type": "linear", "in": 8, "out": 2},
]


def make_instance(i: int, kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> Instance:
    center = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    eps = np.float32(EPS)
    label = int(rng.integers(2))
    x_star = None
    if kind == "counterexample":
        sign = rng.choice(np.array([-1.0, 1.0], np.float32), shape)
        x_star = (center + np.float32(0.99 * EPS) * sign).astype(np.float32)
        x_star.flat[0] = center.flat[0] + eps  # one coordinate exactly on the upper bound
    return Instance(
        id=f"p{i}",
        kind=kind,
        center=center,
        eps=EPS,
        label=label,
        lower=center - eps,
        upper=center + eps,
        target=1 - label if kind == "counterexample" else None,
        x_star=x_star,
        ground_truth="sat" if kind == "counterexample" else "unknown",
        ground_truth_method="planted" if kind == "counterexample" else None,
        hidden_from=("pgd-100", "vertex") if kind == "counterexample" else (),
        generator="needle" if kind == "counterexample" else "clean",
    )


# Kinds deliberately interleaved: nothing may depend on their order.
KINDS = ("clean", "counterexample", "counterexample", "clean", "counterexample")


def make_network(spec: list[dict], shape: tuple[int, ...], seed: int = 0) -> SoundnessNetwork:
    torch.manual_seed(seed)
    net = arch.build(spec)
    for m in net:
        if isinstance(m, nn.BatchNorm2d):  # non-trivial buffers, so they must round-trip too
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    rng = np.random.default_rng(seed)
    instances = [make_instance(i, k, shape, rng) for i, k in enumerate(KINDS)]
    return SoundnessNetwork(
        name=f"test-{len(spec)}",
        net=net,
        input_shape=shape,
        num_classes=2,
        instances=instances,
        settings={"grid": "test", "epochs": 0, "widths": [16, 16]},
        seconds=1.5,
    )


@pytest.fixture
def mlp() -> SoundnessNetwork:
    return make_network(MLP_SPEC, (10,))


@pytest.fixture
def cnn() -> SoundnessNetwork:
    return make_network(CNN_SPEC, (3, 5, 5), seed=1)


def linear_network() -> SoundnessNetwork:
    """y_1 - y_0 = x_0: inputs with x_0 >= 0 are misclassified for label 0."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[1, 0] = 1.0
        net[1].bias.zero_()
    lo = np.full(4, -0.1, np.float32)
    hi = np.full(4, 0.1, np.float32)
    inst = Instance(
        id="lin",
        kind="counterexample",
        center=np.zeros(4, np.float32),
        eps=0.1,
        label=0,
        lower=lo,
        upper=hi,
        target=1,
        x_star=np.array([0.05, 0, 0, 0], np.float32),
    )
    return SoundnessNetwork("linear", net, (4,), 2, [inst])


# --- benchmark folders -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_benchmark_round_trip(tmp_path: Path, which: str, request: pytest.FixtureRequest) -> None:
    original: SoundnessNetwork = request.getfixturevalue(which)
    write_benchmark(original, tmp_path, timeout=30)
    back = read_benchmark(tmp_path)

    assert (back.name, back.input_shape, back.num_classes) == (
        original.name,
        original.input_shape,
        original.num_classes,
    )
    assert back.settings == original.settings and back.seconds == original.seconds
    assert arch.spec_of(back.net) == arch.spec_of(original.net)
    want, got = original.net.state_dict(), back.net.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    x = torch.rand(4, *original.input_shape) * 0.2 - 0.1
    with torch.no_grad():
        assert torch.equal(back.net(x), original.net.eval()(x))
    assert [i.to_json() for i in back.instances] == [i.to_json() for i in original.instances]
    assert [i.kind for i in back.instances] == list(KINDS)

    csv_lines = (tmp_path / "instances.csv").read_text().splitlines()
    assert csv_lines == [f"model.onnx,vnnlib/{i}.vnnlib,30" for i in range(len(KINDS))]
    rows = instance_files(tmp_path)
    assert [r.vnnlib for r in rows] == [tmp_path / f"vnnlib/{i}.vnnlib" for i in range(5)]
    assert all(r.onnx == tmp_path / "model.onnx" and r.timeout == 30.0 for r in rows)


def test_manifest_x_star_inside_parsed_box_exactly(tmp_path: Path, cnn: SoundnessNetwork) -> None:
    write_benchmark(cnn, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    checked = 0
    for record in manifest["instances"]:
        prop = read_property(tmp_path / record["vnnlib"])
        assert prop.label == record["label"]
        if record["kind"] != "counterexample":
            assert record["x_star"] is None
            continue
        x = np.asarray(record["x_star"], dtype=np.float64)
        assert np.all(prop.lower <= x) and np.all(x <= prop.upper)
        assert x[0] == prop.upper[0]  # the planted coordinate on the bound survives exactly
        checked += 1
    assert checked == KINDS.count("counterexample")


def test_property_files_reveal_nothing_private(tmp_path: Path, mlp: SoundnessNetwork) -> None:
    write_benchmark(mlp, tmp_path)
    texts = [(tmp_path / f"vnnlib/{i}.vnnlib").read_text() for i in range(len(KINDS))]
    texts.append((tmp_path / "instances.csv").read_text())
    for text in texts:
        for secret in ("counterexample", "clean", "needle", "x_star", "p1", "p2"):
            assert secret not in text


def test_kind_comes_from_manifest(tmp_path: Path, mlp: SoundnessNetwork) -> None:
    write_benchmark(mlp, tmp_path)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["instances"][0]["kind"] = "counterexample"  # row 0 was clean
    path.write_text(json.dumps(manifest))
    assert read_benchmark(tmp_path).instances[0].kind == "counterexample"


def test_rewrite_removes_stale_property_files(tmp_path: Path, mlp: SoundnessNetwork) -> None:
    write_benchmark(mlp, tmp_path)
    mlp.instances = mlp.instances[:2]
    write_benchmark(mlp, tmp_path)
    assert sorted(p.name for p in (tmp_path / "vnnlib").iterdir()) == ["0.vnnlib", "1.vnnlib"]
    assert len(read_benchmark(tmp_path).instances) == 2
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _tamper_bound(d: Path) -> None:
    text = (d / "vnnlib/1.vnnlib").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("(assert (<= X_3 "))
    _replace(d / "vnnlib/1.vnnlib", line, "(assert (<= X_3 0.5))")


def _tamper_label(d: Path) -> None:
    text = (d / "vnnlib/2.vnnlib").read_text()
    label = json.loads((d / "manifest.json").read_text())["instances"][2]["label"]
    _replace(d / "vnnlib/2.vnnlib", f"Y_{1 - label} Y_{label}", f"Y_{label} Y_{1 - label}")
    assert text != (d / "vnnlib/2.vnnlib").read_text()


def _drop_csv_row(d: Path) -> None:
    lines = (d / "instances.csv").read_text().splitlines()
    (d / "instances.csv").write_text("\n".join(lines[:-1]) + "\n")


def _swap_csv_rows(d: Path) -> None:
    lines = (d / "instances.csv").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (d / "instances.csv").write_text("\n".join(lines) + "\n")


def _manifest_edit(**changes):
    def edit(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        (d / "manifest.json").write_text(json.dumps(m | changes))

    return edit


def _other_model(d: Path) -> None:
    torch.save({"spec": MLP_SPEC, "state_dict": arch.build(MLP_SPEC).state_dict()}, d / "model.pt")


@pytest.mark.parametrize(
    ("tamper", "names"),
    [
        (_tamper_bound, "1.vnnlib"),
        (_tamper_label, "2.vnnlib"),
        (_drop_csv_row, "instances.csv"),
        (_swap_csv_rows, "instances.csv"),
        (_other_model, "model.pt"),
        (lambda d: (d / "model.onnx").write_bytes(b"junk"), "model.onnx"),
        (lambda d: (d / "manifest.json").write_text("{"), "manifest.json"),
        (_manifest_edit(input_shape="10"), "manifest.json"),
        (_manifest_edit(instances={}), "manifest.json"),
        (_manifest_edit(version=99), "manifest.json"),
        (_manifest_edit(num_classes=3), "model.pt"),
    ],
)
def test_read_benchmark_rejects_disagreeing_files(
    tmp_path: Path, mlp: SoundnessNetwork, tamper, names: str
) -> None:
    write_benchmark(mlp, tmp_path)
    read_benchmark(tmp_path)  # consistent before tampering
    tamper(tmp_path)
    with pytest.raises(CorruptArtefactError) as e:
        read_benchmark(tmp_path)
    assert names in str(e.value) and "\n" not in str(e.value)


def test_read_benchmark_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingArtefactError, match=r"manifest\.json: not found"):
        read_benchmark(tmp_path)


def test_write_benchmark_rejects_bad_input(tmp_path: Path, mlp: SoundnessNetwork) -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        write_benchmark(mlp, tmp_path, timeout=0)
    for bad in ({"bad": object()}, {"lr": float("nan")}):
        mlp.settings = bad
        with pytest.raises(InvalidArgument, match="JSON"):
            write_benchmark(mlp, tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_instances_csv_timeout_text(tmp_path: Path, mlp: SoundnessNetwork) -> None:
    write_benchmark(mlp, tmp_path, timeout=1.5)
    assert (tmp_path / "instances.csv").read_text().splitlines()[0].endswith(",1.5")
    write_benchmark(mlp, tmp_path, timeout=1e6)
    assert (tmp_path / "instances.csv").read_text().splitlines()[0].endswith(",1000000")
    assert instance_files(tmp_path)[0].timeout == 1e6


# --- ONNX --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_onnx_runtime_logits_equal_torch(
    tmp_path: Path, which: str, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("onnxruntime")
    network: SoundnessNetwork = request.getfixturevalue(which)
    network.net.train()  # the export must still be of the eval-mode network
    write_benchmark(network, tmp_path)
    assert network.net.training  # and leave the caller's module as it was
    network.net.eval()
    x = np.random.default_rng(3).uniform(-0.1, 0.1, (7, *network.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = network.net(torch.from_numpy(x)).numpy()
    got = onnx_logits(tmp_path, x)
    assert got.shape == (7, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    single = onnx_logits(tmp_path, x[0])
    assert single.shape == (2,)
    np.testing.assert_allclose(single, want[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidArgument, match="shape"):
        onnx_logits(tmp_path, np.zeros((2, 11), np.float32))


def test_onnx_logits_without_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install onnx onnxruntime"):
        onnx_logits(tmp_path, np.zeros(10, np.float32))


# --- VNN-LIB -----------------------------------------------------------------------------


def test_vnnlib_text_structure(tmp_path: Path) -> None:
    lower = np.full((2, 3), -0.05, np.float32)
    upper = np.full((2, 3), 0.1, np.float32)
    path = write_property(tmp_path / "p.vnnlib", lower, upper, 1, 3, comment="a\nb")
    lines = path.read_text().splitlines()
    assert lines[:2] == ["; a", "; b"]
    code = [ln for ln in lines if ln and not ln.startswith(";")]
    assert code[:9] == [f"(declare-const X_{i} Real)" for i in range(6)] + [
        f"(declare-const Y_{j} Real)" for j in range(3)
    ]
    bounds = code[9:21]
    for i in range(6):
        assert bounds[2 * i] == f"(assert (<= X_{i} {format_bound(0.1)}))"
        assert bounds[2 * i + 1] == f"(assert (>= X_{i} {format_bound(-0.05)}))"
    assert code[21:] == ["(assert (or", "    (and (>= Y_0 Y_1))", "    (and (>= Y_2 Y_1))", "))"]

    prop = read_property(path)
    assert (prop.label, prop.targets, prop.num_classes, prop.num_inputs) == (1, (0, 2), 3, 6)
    assert prop.lower.dtype == np.float64
    np.testing.assert_array_equal(prop.lower, lower.astype(np.float64).ravel())

    only = write_property(tmp_path / "q.vnnlib", lower, upper, 1, 3, targets=[2])
    assert read_property(only).targets == (2,)
    assert "(and (>= Y_0 Y_1))" not in only.read_text()


def test_vnnlib_bounds_parse_back_to_the_same_float32(tmp_path: Path) -> None:
    tricky = np.array([0.1, -0.1, 1e-7, -0.0, 1e-45, 3.4e38, -3.4e38, 1 / 3, 0.5, -1.0], np.float32)
    path = write_property(tmp_path / "p.vnnlib", tricky, np.abs(tricky), 0, 2)
    prop = read_property(path)
    np.testing.assert_array_equal(prop.lower, tricky.astype(np.float64))
    np.testing.assert_array_equal(prop.upper.astype(np.float32), np.abs(tricky))
    numbers = [
        ln.split()[-1] for ln in path.read_text().splitlines() if "X_" in ln and "assert" in ln
    ]
    assert len(numbers) == 20 and not any("e" in n for n in numbers)


@settings(max_examples=200, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_format_bound_is_exact(v: float) -> None:
    text = format_bound(v)
    assert float(text) == float(np.float32(v))
    assert "." in text and "e" not in text.lower()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lower": [0.2], "upper": [0.1]}, "lower"),
        ({"label": 2}, "label"),
        ({"targets": [0]}, "targets"),
        ({"targets": []}, "targets"),
        ({"upper": [np.inf]}, "finite"),
        ({"num_classes": 1, "label": 0}, "num_classes"),
    ],
)
def test_write_property_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"lower": [0.0], "upper": [0.1], "label": 0, "num_classes": 2} | kwargs
    with pytest.raises(InvalidArgument, match=match):
        write_property(tmp_path / "p.vnnlib", **args)


@pytest.mark.parametrize(
    ("mutate", "line", "match"),
    [
        (
            lambda t: t.replace("(assert (>= X_1 0.0))", "(assert (>= X_1 (- 1.0)))"),
            13,
            "unexpected",
        ),
        (lambda t: t.replace("(assert (>= X_1 0.0))\n", ""), 0, "X_1 lacks"),
        (lambda t: t.replace("(declare-const X_1 Real)", "(declare-const X_2 Real)"), 4, "order"),
        (lambda t: t.replace("(and (>= Y_1 Y_0))", "(and (<= Y_1 Y_0))"), 17, "expected"),
        (lambda t: t[: t.rindex("))")], 16, "never closed"),
        (lambda t: t + "(assert (or (and (>= Y_1 Y_0))))\n", 19, "second output"),
        (lambda t: t.replace("(assert (<= X_1 1.0))", "(assert (<= X_1 -1.0))"), 0, "empty box"),
        (lambda t: t.replace("(and (>= Y_1 Y_0))", "(and (>= Y_5 Y_0))"), 17, "undeclared"),
    ],
)
def test_read_property_names_file_and_line(tmp_path: Path, mutate, line: int, match: str) -> None:
    path = write_property(tmp_path / "p.vnnlib", [0.0, 0.0], [1.0, 1.0], 0, 2)
    text = path.read_text()
    path.write_text(mutate(text))
    assert path.read_text() != text
    where = f"{path}:{line}:" if line else f"{path}:"
    with pytest.raises(CorruptArtefactError, match=match) as e:
        read_property(path)
    assert str(e.value).startswith(where)


def test_read_property_accepts_one_line_output_assertion(tmp_path: Path) -> None:
    path = write_property(tmp_path / "p.vnnlib", [0.0], [1.0], 2, 3)
    text = path.read_text()
    block = text[text.index("(assert (or") :]
    path.write_text(text.replace(block, "(assert (or (and (>= Y_0 Y_2)) (and (>= Y_1 Y_2))))\n"))
    assert read_property(path).targets == (0, 1)


# --- parse_result ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("sat\n", "sat"),
        ("unsat", "unsat"),
        ("  UNSAT  \r\n", "unsat"),
        ("\n\ntimeout\n", "timeout"),
        ("unknown", "unknown"),
        ("error", "error"),
        ("violated", "sat"),
        ("holds\n", "unsat"),
        ("unsat\nsome log line\n", "unsat"),
    ],
)
def test_parse_result_verdicts(text: str, verdict: str) -> None:
    r = parse_result(text)
    assert r.verdict == verdict and r.reason == "" and r.x is None
    assert r.raw == text


def test_parse_result_unsat_is_not_sat() -> None:
    # SoundnessBench scored verdicts by substring: "sat" in "unsat" made verified into falsified.
    assert "sat" in "unsat"
    assert parse_result("unsat").verdict == "unsat"
    assert parse_result("unsat\n").verdict != "sat"


@pytest.mark.parametrize(
    "text", ["", "  \n \n", "sat.", "result: unsat", "unsatisfiable", "SAT!", "safe", "1"]
)
def test_parse_result_junk_is_error(text: str) -> None:
    r = parse_result(text)
    assert r.verdict == "error"
    assert r.reason and "\n" not in r.reason


def test_parse_result_counterexample_block() -> None:
    text = "sat\n((X_0 0.05)\n (X_1   -1e-3)\n(X_2 .5) (Y_0 -0.25)\n  (Y_1 0.75))\n"
    r = parse_result(text)
    assert r.verdict == "sat" and r.reason == ""
    np.testing.assert_array_equal(r.x, [0.05, -1e-3, 0.5])
    np.testing.assert_array_equal(r.y, [-0.25, 0.75])
    one_line = parse_result("sat\n((X_0 1.0) (X_1 2.0))")
    np.testing.assert_array_equal(one_line.x, [1.0, 2.0])
    assert one_line.y is None


@pytest.mark.parametrize(
    ("block", "match"),
    [
        ("((X_0 0.1) (X_2 0.3))", "X_1 is missing"),
        ("((X_0 0.1) (X_0 0.3))", "twice"),
        ("((X_0 abc))", "unexpected"),
        ("(X_0 0.1)", "unexpected"),
        ("((Y_0 0.1))", "no X_i"),
        ("X_0 0.1", "expected"),
    ],
)
def test_parse_result_bad_counterexample_block(block: str, match: str) -> None:
    r = parse_result("sat\n" + block)
    assert r.verdict == "sat"  # still the verifier's claim; the block is what is wrong
    assert r.x is None and match in r.reason


# --- ExternalVerifier --------------------------------------------------------------------

FAKE_VERIFIER = """\
import json, os, subprocess, sys, time
onnx, vnnlib, timeout, result = sys.argv[1:5]
mode = {mode!r}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), mode + ".args"), "w") as f:
    json.dump(sys.argv[1:], f)
if mode == "unsat":
    open(result, "w").write("unsat\\n")
elif mode == "sat":
    open(result, "w").write("sat\\n((X_0 0.05)\\n (X_1 0.0)\\n (X_2 -0.1)\\n (X_3 0.1)\\n"
                            " (Y_0 0.0)\\n (Y_1 0.05))\\n")
elif mode == "sleep":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
elif mode == "crash":
    print("loading network", file=sys.stderr)
    open(result, "w").close()  # created, never written
    print("RuntimeError: CUDA out of memory", file=sys.stderr)
    sys.exit(1)
elif mode == "silent":
    pass
elif mode == "late":  # proves, then overruns its timeout
    open(result, "w").write("unsat\\n")
    time.sleep(60)
"""


def fake_verifier(tmp_path: Path, mode: str) -> str:
    script = tmp_path / f"{mode}.py"
    script.write_text(FAKE_VERIFIER.format(mode=mode))
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


@pytest.fixture
def bench(tmp_path: Path):
    directory = tmp_path / "bench dir"  # a space: paths must survive both run modes
    write_benchmark(linear_network(), directory)
    return instance_files(directory)[0]


def test_external_verifier_unsat(tmp_path: Path, bench) -> None:
    v = ExternalVerifier(
        fake_verifier(tmp_path, "unsat") + " {onnx} {vnnlib} {timeout:.0f} {result}", timeout=7.5
    )
    assert not v.shell
    r = v.verify(bench)
    assert r.verdict == "unsat" and r.raw == "unsat\n" and r.seconds > 0
    args = json.loads((tmp_path / "unsat.args").read_text())
    assert args[:3] == [str(bench.onnx), str(bench.vnnlib), "8"]
    assert not Path(args[3]).exists()  # the result file's folder is cleaned up
    assert "timeout=7.5" in repr(v) and "unsat.py" in repr(v)


def test_external_verifier_sat_with_genuine_counterexample(tmp_path: Path, bench) -> None:
    v = ExternalVerifier(
        fake_verifier(tmp_path, "sat") + " {onnx} {vnnlib} {timeout} {result}", timeout=5
    )
    r = v.verify((bench.onnx, bench.vnnlib))
    assert r.verdict == "sat"
    np.testing.assert_array_equal(r.x, [0.05, 0.0, -0.1, 0.1])
    np.testing.assert_array_equal(r.y, [0.0, 0.05])
    assert json.loads((tmp_path / "sat.args").read_text())[2] == "5"
    network = read_benchmark(bench.onnx.parent)
    assert validate_counterexample(network, read_property(bench.vnnlib), r.x) is None


def test_external_verifier_through_a_shell(tmp_path: Path, bench) -> None:
    cmd = fake_verifier(tmp_path, "unsat") + " {onnx} {vnnlib} {timeout} {result} 2>&1 | cat"
    v = ExternalVerifier(cmd, timeout=5)
    assert v.shell
    assert v.verify(bench).verdict == "unsat"
    assert json.loads((tmp_path / "unsat.args").read_text())[:2] == [
        str(bench.onnx),
        str(bench.vnnlib),
    ]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie is dead


def test_external_verifier_timeout_kills_the_process_group(tmp_path: Path, bench) -> None:
    v = ExternalVerifier(
        fake_verifier(tmp_path, "sleep") + " {onnx} {vnnlib} {timeout} {result}",
        timeout=1,
        grace=0.5,
    )
    start = time.monotonic()
    r = v.verify(bench)
    elapsed = time.monotonic() - start
    assert r.verdict == "timeout" and "killed" in r.reason
    assert r.seconds >= 1.4 and elapsed < 10
    child = int((tmp_path / "child.pid").read_text())
    if Path("/proc").is_dir():
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)


def test_a_late_unsat_stays_unsat_with_its_time(tmp_path: Path, bench) -> None:
    """An "unsat" written before the kill is the verifier's answer: a wrong proof must fail the
    suite whatever the time, so the timeout does not turn it into a harmless "timeout"."""
    v = ExternalVerifier(
        fake_verifier(tmp_path, "late") + " {onnx} {vnnlib} {timeout} {result}",
        timeout=1,
        grace=0.5,
    )
    r = v.verify(bench)
    assert r.verdict == "unsat" and r.reason.startswith("late: ") and r.seconds >= 1.4


def test_external_verifier_crash_is_error_with_stderr(tmp_path: Path, bench) -> None:
    v = ExternalVerifier(
        fake_verifier(tmp_path, "crash") + " {onnx} {vnnlib} {timeout} {result}", timeout=5
    )
    r = v.verify(bench)
    assert r.verdict == "error"
    assert "exit code 1" in r.reason and "CUDA out of memory" in r.reason
    assert "loading network" not in r.reason


def test_external_verifier_without_result_file_is_error(tmp_path: Path, bench) -> None:
    v = ExternalVerifier(
        fake_verifier(tmp_path, "silent") + " {onnx} {vnnlib} {timeout} {result}", timeout=5
    )
    r = v.verify(bench)
    assert r.verdict == "error" and "no result file" in r.reason


def test_external_verifier_missing_executable(tmp_path: Path, bench) -> None:
    v = ExternalVerifier(str(tmp_path / "nope") + " {onnx} {vnnlib} {result}", timeout=5)
    with pytest.raises(InvalidArgument, match="cannot start verifier"):
        v.verify(bench)


@pytest.mark.parametrize(
    ("command", "match"),
    [
        ("run {onnx} {vnnlib} {timeout}", r"no \{result\} placeholder"),
        ("run {onnx} {spec} {result}", r"unknown placeholder \{spec\}"),
        ("run {} {result}", "unknown placeholder"),
        ("run {onnx.name} {result}", "unknown placeholder"),
        ("run {onnx {result}", "braces"),
        ("run 'unclosed {result}", "quoting"),
        ("   ", "command"),
    ],
)
def test_external_verifier_validates_template(command: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        ExternalVerifier(command, timeout=5)
    assert "\n" not in str(e.value)


def test_external_verifier_validates_timeout() -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        ExternalVerifier("run {result}", timeout=0)
    # literal braces are allowed when doubled
    assert ExternalVerifier("run --opts '{{}}' {result}", timeout=1).argv("a", "b", "r") == [
        "run",
        "--opts",
        "{}",
        "r",
    ]


# --- validate_counterexample -------------------------------------------------------------


def test_validate_counterexample() -> None:
    network = linear_network()
    prop_lo, prop_hi = network.instances[0].lower, network.instances[0].upper
    prop = Property(prop_lo.astype(np.float64), prop_hi.astype(np.float64), 0, (1,), 2)
    assert validate_counterexample(network, prop, network.instances[0].x_star) is None
    assert validate_counterexample(network.net, prop, [0.0, 0.1, -0.1, 0.1]) is None  # y_1 == y_0
    on_bound = np.array([float(np.float32(0.1)), 0, 0, 0])
    assert validate_counterexample(network.net, prop, on_bound) is None

    above = np.nextafter(np.float32(0.1), np.float32(1)).astype(np.float64)
    reason = validate_counterexample(network.net, prop, [above, 0, 0, 0])
    assert reason is not None and "outside the box" in reason and "X_0" in reason
    reason = validate_counterexample(network.net, prop, [0.05, 0, -0.2, 0])
    assert reason is not None and "X_2" in reason and "below" in reason
    reason = validate_counterexample(network.net, prop, [-0.05, 0, 0, 0])
    assert reason is not None and "not misclassified" in reason
    assert validate_counterexample(network.net, prop, [-1e-7, 0, 0, 0], tol=1e-6) is None
    assert validate_counterexample(network.net, prop, [-1e-5, 0, 0, 0], tol=1e-6) is not None
    assert "values" in validate_counterexample(network.net, prop, [0.05, 0, 0])
    assert "non-finite" in validate_counterexample(network.net, prop, [np.nan, 0, 0, 0])


def test_validate_counterexample_allows_only_float32_rounding_of_bounds() -> None:
    net = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0], [1.0]]))
        net[0].bias.zero_()
    prop = Property(np.array([0.0]), np.array([0.1]), 0, (1,), 2)  # 0.1 not a float32
    assert validate_counterexample(net, prop, [float(np.float32(0.1))]) is None
    beyond = np.nextafter(np.float32(0.1), np.float32(1)).astype(np.float64)
    assert validate_counterexample(net, prop, [beyond]) is not None


def test_validate_counterexample_on_a_cnn(tmp_path: Path, cnn: SoundnessNetwork) -> None:
    inst = cnn.instances[0]
    with torch.no_grad():
        predicted = int(cnn.net(torch.from_numpy(inst.center[None])).argmax())
    reasons = {}
    for label in (0, 1):
        path = write_property(tmp_path / f"{label}.vnnlib", inst.lower, inst.upper, label, 2)
        prop = read_property(path)
        reasons[label] = validate_counterexample(cnn, prop, inst.center.ravel())  # shape: network
        shaped = validate_counterexample(cnn.net, prop, inst.center)  # shape: from x itself
        assert (shaped is None) == (reasons[label] is None)
    # The centre is a counterexample for exactly the label the network does not predict.
    assert reasons[1 - predicted] is None
    assert "not misclassified" in reasons[predicted]
    with pytest.raises(InvalidArgument, match="input_shape"):
        validate_counterexample(cnn.net, prop, inst.center.ravel())


# --- results CSV -------------------------------------------------------------------------


def test_read_results_csv_both_layouts(tmp_path: Path) -> None:
    six = tmp_path / "six.csv"
    six.write_text(
        "bench,model.onnx,vnnlib/0.vnnlib,0.5,unsat,1.25\n"
        "bench,model.onnx,vnnlib/1.vnnlib,0.5,sat,2\n"
        "\n"
        "bench,model.onnx,vnnlib/2.vnnlib,0.5,run_instance_timeout,60\n"
    )
    rows = read_results_csv(six)
    assert [r.verdict for r in rows] == ["unsat", "sat", "error"]
    assert rows[0].benchmark == "bench" and rows[0].vnnlib == "vnnlib/0.vnnlib"
    assert (rows[0].prepare_time, rows[0].run_time) == (0.5, 1.25)
    assert rows[2].result == "run_instance_timeout"

    five = tmp_path / "five.csv"
    five.write_text(
        "onnx,vnnlib,prepare_time,result,run_time\n"
        "model.onnx,vnnlib/0.vnnlib,0,holds,3\n"
        'model.onnx,"vnnlib/1,odd.vnnlib",0,violated,4\n'
        "model.onnx,vnnlib/2.vnnlib,0,Timeout ,60\n"
    )
    rows = read_results_csv(five)
    assert [r.verdict for r in rows] == ["unsat", "sat", "timeout"]
    assert rows[1].vnnlib == "vnnlib/1,odd.vnnlib" and rows[1].benchmark is None


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("onnx,vnnlib,prepare_time,result,run_time\nm,v,0,sat\n", 2, "4 columns"),
        ("onnx,vnnlib,prep,result,time\nm,v,0,sat,1\n", 1, "prepare_time"),
        ("m,v,0,sat,1\nb,m,v,0,sat,1\n", 2, "one layout"),
        ("b,m,v,0,sat,1\nb,m,v,x,sat,1\n", 2, "prepare_time"),
        ("m,v,0,sat,nan\n", 1, "run_time"),
    ],
)
def test_read_results_csv_malformed(tmp_path: Path, text: str, line: int, match: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        read_results_csv(path)
    assert str(e.value).startswith(f"{path}:{line}:")


def test_read_results_csv_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_results_csv(tmp_path / "none.csv")
