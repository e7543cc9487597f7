"""`pytest suites/ --model=convnext_t` on a team's own ImageNet copy, in every layout.

A random-weights convnext_tiny stands in for the release candidate (so the accuracy gates
must fail, naming the published numbers they hold it to). Every suite runs on each of the
seven layouts, in one run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from _imagenet_trees import flat_tree, folder_tree, imagenet_r_tree, v2_tree
from _plugin_runs import REPO, SUITES, read_json, run_suites

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]

LAYOUTS = {
    "wnid_subset": lambda base: folder_tree(base / "val", "wnid"),
    "index": lambda base: folder_tree(base / "val", "index"),
    "class_names": lambda base: folder_tree(base / "val", "name"),
    "flat_wnid_per_line": lambda base: flat_tree(base, "txt"),
    "flat_loc_val_solution": lambda base: flat_tree(base, "csv"),
    "imagenet_v2": v2_tree,
    "imagenet_r": imagenet_r_tree,
}
PUBLISHED = "published top-1 82.52 (torchvision weights meta, ConvNeXt_Tiny_Weights.IMAGENET1K_V1)"


def failed_on_gates_only(result: pytest.RunResult) -> str:
    """The run's output, after checking that it ended with failed gates (exit 1), not with
    an error or a crash."""
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out + result.stderr.str()
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, out
    assert "Traceback" not in out
    return out


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory):
    """A temporary $TORCH_HOME holding random convnext_tiny weights (not the published file,
    whose name carries a sha256 prefix, so they are passed with --weights)."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    weights = home / "convnext_tiny_random.pth"
    torch.save(torchvision.models.convnext_tiny(weights=None).state_dict(), weights)
    yield home
    weights.unlink()  # 110 MB


def test_every_suite_on_every_layout(
    torch_home: Path,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The headline command, every suite, every layout, in one run: the wnid subset through
    --data-root (the primary eval set, imagenet_val), the other six through ``eval_sets`` in
    the config; both paths detect the layout with the same loader, and one run instead of
    seven saves six interpreter and model starts. Each suite runs on 224-px RGB images of 1000
    classes from every layout, and only the accuracy gates fail (random weights). Kept small
    (convnext_tiny at 224 px on 2 CPU cores): 2 of each layout's 6 images (--max-samples), one
    patch size (two locations), and of the soundness suite the one check that reads the model
    (its benchmark does not depend on the model: tests/test_soundness_suite.py runs it)."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    roots = {layout: build(tmp_path / layout) for layout, build in LAYOUTS.items()}
    names = {layout: "imagenet_val" if layout == "wnid_subset" else layout for layout in LAYOUTS}
    extra = ", ".join(
        f'{names[layout]} = "{roots[layout]}"' for layout in LAYOUTS if layout != "wnid_subset"
    )
    pytester.makefile(".toml", vcheck=f"eval_sets = {{ {extra} }}\n")
    result = run_suites(
        pytester,
        SUITES,
        "--model=convnext_t",
        f"--weights={torch_home / 'convnext_tiny_random.pth'}",
        f"--data-root={roots['wnid_subset']}",
        "--vcheck-config=vcheck.toml",
        "--max-samples=2",
        f"--cache-dir={tmp_path / 'cache'}",
        "--metrics-json=m.json",
        "-rfs",
        "-k",
        "not area0.05 and not area0.1 and not asr_against_patch_size"
        " and (not soundness or certified_implies)",
    )
    out = failed_on_gates_only(result)

    doc = read_json(pytester.path / "m.json")
    assert sorted((e["name"], e["n"]) for e in doc["eval_sets"]) == sorted(
        (name, 2) for name in names.values()
    )
    assert doc["profile"]["path"].endswith("profiles/published/convnext_tiny.toml")
    checks = doc["checks"]
    for suite in ("accuracy", "adversarial", "corruptions", "patch", "fairness"):
        covered = {c["eval_set"] for c in checks if c["suite"] == suite}
        assert covered == set(names.values()), (suite, covered)
    assert {c["suite"] for c in checks if c["outcome"] == "fail"} == {"accuracy"}, out
    for layout, name in names.items():
        top1 = next(
            c for c in checks if c["metric"] == "top1" and not c["slice"] and c["eval_set"] == name
        )
        assert top1["outcome"] == "fail" and top1["n"] == 2, layout
        assert top1["threshold"] == pytest.approx(0.8152)
        assert f"test_accuracy.py::test_metric[top1-{name}]" in out
        failure = next(line for line in out.splitlines() if f"top1 on {name} " in line)
        assert PUBLISHED in failure and "a subset's interval is wide" in failure, layout
        expected = "ImageNet-R (named so)" if layout == "imagenet_r" else str(roots[layout])
        assert f"vcheck: {name}: {roots[layout]}" in out and expected in out, layout
    # convnext's GELU (erf) has no auto_LiRPA bound rule: the model check says so and skips
    assert "auto_LiRPA cannot bound convnext_t" in out and "onnx::Erf" in out


def test_real_labels_and_fairness_metadata_match_by_file_name(
    torch_home: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ReaL (keyed ILSVRC2012_val_k by position) and a metadata table keyed by file name
    apply to wnid class folders, whose sample ids are ``wnid/ILSVRC2012_val_k.JPEG``."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    root = folder_tree(tmp_path / "data" / "val", "wnid")
    published = (REPO / "fixtures/profiles/published/convnext_tiny.toml").read_text()
    real = REPO / "fixtures" / "imagenet" / "real.json"
    pytester.makefile(
        ".toml",
        profile=published
        + f'\n[multilabel.label_sets.real]\neval_set = "imagenet_val"\nformat = "real"\n'
        f'path = "{real}"\n\n[fairness]\nmin_group_size = 1\nmin_class_samples = 1\n',
        vcheck='metadata = { imagenet_val = "meta.csv" }\n',
    )
    rows = [f"ILSVRC2012_val_{k:08d}.JPEG,{'north' if k <= 3 else 'south'}" for k in range(1, 7)]
    (pytester.path / "meta.csv").write_text("file_name,region\n" + "\n".join(rows) + "\n")
    result = run_suites(
        pytester,
        SUITES / "test_multilabel.py",
        SUITES / "test_fairness.py",
        "--model=convnext_t",
        f"--weights={torch_home / 'convnext_tiny_random.pth'}",
        f"--data-root={root}",
        "--vcheck-config=vcheck.toml",
        "--profile=profile.toml",
        f"--cache-dir={tmp_path / 'cache'}",
        "--metrics-json=m.json",
    )
    out = result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), out
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, out
    checks = read_json(pytester.path / "m.json")["checks"]
    real_checks = [c for c in checks if c["suite"] == "multilabel" and c["metric"] == "top1"]
    assert real_checks and real_checks[0]["n"] == 5  # ILSVRC2012_val_00000001: no ReaL label
    region = [c for c in checks if c["suite"] == "fairness" and c["slice"] == "region"]
    groups = {g["group"]: g["n"] for g in region[0]["details"]["groups"]}
    assert groups == {"north": 3, "south": 3}


def test_timm_model_from_the_hub_cache_on_a_wnid_subset(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    name = "test_resnet.r160_in1k"
    net = timm.create_model(name)
    snapshot = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(snapshot.name)
    save_file(net.state_dict(), snapshot / "model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    root = folder_tree(tmp_path / "data" / "val", "wnid")
    result = run_suites(
        pytester,
        SUITES / "test_accuracy.py",
        f"--model=timm:{name}",
        f"--data-root={root}",
        f"--cache-dir={tmp_path / 'cache'}",
        "--metrics-json=m.json",
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out + result.stderr.str()
    assert "errors" not in result.parseoutcomes(), out
    doc = read_json(pytester.path / "m.json")
    assert doc["model"]["name"] == f"timm:{name}"
    assert doc["profile"]["path"].endswith("profiles/imagenet.toml")  # generic floors
    assert [(e["name"], e["n"]) for e in doc["eval_sets"]] == [("imagenet_val", 6)]
