"""A synthetic metrics document with every kind of check and picture the report draws.

It serves the report's tests (the browser test opens it), the rendering benchmark (thousands
of checks) and anyone who wants to see a report without running the suites::

    python -m vcheck.report.demo demo.html [--checks 5000] [--failing 1]

The numbers are made up (seeded), the shapes are those the suites record: accuracy checks
with a reliability diagram and per-class recall, the soundness suite's network x verifier
checks, and one artifact of each kind (series with interval bands, bars with intervals,
table, images) for the adversarial, corruptions, patch, fairness and multi-label suites.

Public names: :func:`document`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from vcheck.checks import CheckResult, Threshold
from vcheck.report import artifacts
from vcheck.report.document import build_document, ids_digest, pack_bits

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NETWORKS = (
    "mlp_4x64_eps0.02",
    "cnn_1conv_1x5x5_eps0.02",
    "cnn_2conv_3x5x5_eps0.02",
    "cnn_avgpool_1x5x5_eps0.02",
    "cnn_sigmoid_1x5x5_eps0.02",
    "edge_ties_3class",
)
VERIFIERS = ("IBP", "CROWN", "alpha-CROWN", "BaB")
EVAL_SET = "fmnist_test"
FINGERPRINT = "ab12" * 16


def _wilson(k: int, n: int) -> tuple[float, float]:
    from vcheck.functional.intervals import wilson_interval

    return wilson_interval(k, n)


def _accuracy_checks(rng: np.random.Generator, n: int) -> list[CheckResult]:
    recall = np.clip(rng.normal(0.9, 0.06, len(CLASSES)), 0.55, 0.995)
    recall[6] = 0.71  # Shirt is hard
    per_class_n = [n // len(CLASSES)] * len(CLASSES)
    worst = int(np.argmin(recall))
    k_top1 = int(0.9125 * n)
    conf = np.linspace(1 / 30, 29 / 30, 15)
    count = np.round(n * np.exp(8 * (conf - 1)) / np.exp(8 * (conf - 1)).sum()).astype(int)
    reliability = {
        "count": count.tolist(),
        "confidence": [round(float(c), 6) if k else None for c, k in zip(conf, count, strict=True)],
        "accuracy": [
            round(float(min(1.0, c * 0.97 + 0.01)), 6) if k else None
            for c, k in zip(conf, count, strict=True)
        ],
    }
    wk = round(recall[worst] * per_class_n[worst])
    return [
        CheckResult(
            "accuracy",
            "top1",
            EVAL_SET,
            k_top1 / n,
            n,
            Threshold(0.88, "min"),
            _wilson(k_top1, n),
            "wilson",
        ),
        CheckResult(
            "accuracy",
            "ece",
            EVAL_SET,
            0.0213,
            n,
            Threshold(0.05, "max"),
            (0.017, 0.026),
            "bootstrap-percentile(200)",
            details={"reliability": reliability},
        ),
        CheckResult("accuracy", "nll", EVAL_SET, 0.2411, n),
        CheckResult(
            "accuracy",
            "worst_class_recall",
            EVAL_SET,
            wk / per_class_n[worst],
            per_class_n[worst],
            Threshold(0.65, "min"),
            _wilson(wk, per_class_n[worst]),
            "wilson",
            details={
                "worst_class": CLASSES[worst],
                "per_class_recall": {
                    c: round(float(r), 6) for c, r in zip(CLASSES, recall, strict=True)
                },
                "per_class_n": dict(zip(CLASSES, per_class_n, strict=True)),
            },
        ),
        CheckResult(
            "accuracy",
            "top1",
            EVAL_SET,
            0.9633,
            3 * n // 10,
            Threshold(0.95, "min"),
            (0.955, 0.970),
            "wilson",
            slice="footwear",
        ),
        CheckResult(
            "accuracy", "batch1_vs_batch_max_rel_diff", EVAL_SET, 3.2e-7, 64, Threshold(1e-4, "max")
        ),
    ]


def _soundness_checks() -> list[CheckResult]:
    out = []
    for net in NETWORKS:
        out.append(
            CheckResult(
                "soundness", "invalid_or_exposed_counterexamples", net, 0, 20, Threshold(0.0, "max")
            )
        )
        for v in VERIFIERS:
            rate = 1.0 if v in ("IBP", "alpha-CROWN", "BaB") else 0.6
            out += [
                CheckResult(
                    "soundness", f"unsat_on_counterexample[{v}]", net, 0, 10, Threshold(0.0, "max")
                ),
                CheckResult("soundness", f"invalid_sat[{v}]", net, 0, 20, Threshold(0.0, "max")),
                CheckResult("soundness", f"verified_rate[{v}]", net, rate, 10),
                CheckResult(
                    "soundness", f"unsat_on_falsified_clean[{v}]", net, 0, 10, Threshold(0.0, "max")
                ),
            ]
    return out


def _thumb(rng: np.random.Generator, shift: int) -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    blob = np.exp(-((yy - 14 - shift) ** 2 + (xx - 14 + shift) ** 2) / 60.0)
    return np.clip(blob + 0.15 * rng.random((28, 28)), 0, 1)[None]


def _artifacts(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    eps = [0, 1 / 255, 2 / 255, 4 / 255, 8 / 255]
    curves = []
    for label, decay in (("Linf PGD", 9.0), ("Linf FGSM", 6.0), ("L2 PGD", 3.0)):
        y = [0.91 * math.exp(-decay * e * 25) for e in eps]
        cis = [_wilson(round(v * n), n) for v in y]
        curves.append(
            {
                "label": label,
                "x": eps,
                "y": y,
                "low": [c[0] for c in cis],
                "high": [c[1] for c in cis],
            }
        )
    corruptions = (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "motion_blur",
        "brightness",
        "contrast",
        "jpeg",
    )
    severity = [1, 2, 3, 4, 5]
    corr_curves = [
        {"label": c, "x": severity, "y": [0.91 - (0.02 + 0.01 * i) * s for s in severity]}
        for i, c in enumerate(corruptions[:4])
    ]
    groups = ("light", "medium", "dark", "high contrast", "low contrast")
    acc = [0.93, 0.91, 0.84, 0.92, 0.88]
    sizes = [1200, 2400, 310, 900, 640]
    cis = [_wilson(round(a * m), m) for a, m in zip(acc, sizes, strict=True)]
    images = [
        {
            "image": _thumb(rng, s),
            "caption": f"eps=2/255: {CLASSES[s]} -> {CLASSES[s + 1]}",
            "true": CLASSES[s],
            "predicted": CLASSES[s + 1],
        }
        for s in range(4)
    ]

    def art(suite: str, name: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "suite": suite,
            "name": name,
            "kind": kind,
            "eval_set": EVAL_SET,
            "nodeid": f"suites/test_{suite}.py::test_{name}",
            "data": data,
        }

    return [
        art(
            "adversarial",
            "robust_accuracy_vs_eps",
            "series",
            artifacts.series("epsilon (L-inf, pixels in [0, 1])", "robust accuracy", curves),
        ),
        art("adversarial", "adversarial_examples", "images", artifacts.images(images)),
        art(
            "corruptions",
            "accuracy_by_severity",
            "series",
            artifacts.series("severity", "accuracy", corr_curves),
        ),
        art(
            "corruptions",
            "accuracy_table",
            "table",
            artifacts.table(
                ["corruption", *map(str, severity)],
                [[c, *(round(0.91 - 0.02 * s, 4) for s in severity)] for c in corruptions],
            ),
        ),
        art(
            "patch",
            "asr_vs_patch_size",
            "series",
            artifacts.series(
                "patch area (fraction of the image)",
                "attack success rate",
                [
                    {
                        "label": "adversarial patch",
                        "x": [0.01, 0.02, 0.05, 0.1],
                        "y": [0.05, 0.12, 0.4, 0.8],
                    },
                    {
                        "label": "noise patch",
                        "x": [0.01, 0.02, 0.05, 0.1],
                        "y": [0.01, 0.02, 0.04, 0.07],
                    },
                ],
            ),
        ),
        art("patch", "patched_images", "images", artifacts.images(images[:2])),
        art(
            "fairness",
            "accuracy_by_brightness",
            "bars",
            artifacts.bars(
                groups,
                acc,
                value_label="accuracy",
                low=[c[0] for c in cis],
                high=[c[1] for c in cis],
                n=sizes,
                note="excluded (fewer than 100 samples): 'saturated' (n=12)",
            ),
        ),
        art(
            "multilabel",
            "errors_by_category",
            "table",
            artifacts.table(
                ["category", "minor", "major", "total"],
                [
                    ["fine-grained", 40, 12, 52],
                    ["multi-object", 25, 3, 28],
                    ["non-prototypical", 9, 7, 16],
                ],
            ),
        ),
    ]


def _fillers(count: int, rng: np.random.Generator) -> list[CheckResult]:
    """Many ordinary checks (for the rendering benchmark), spread over suites and slices."""
    suites = ("adversarial", "corruptions", "fairness", "patch")
    out = []
    for i in range(count):
        suite = suites[i % len(suites)]
        value = float(rng.uniform(0.6, 0.99))
        k = round(value * 1000)
        out.append(
            CheckResult(
                suite,
                f"metric_{i % 40:02d}",
                EVAL_SET,
                k / 1000,
                1000,
                Threshold(0.5, "min"),
                _wilson(k, 1000),
                "wilson",
                slice=f"slice_{(i // 40) % 25:02d}",
            )
        )
    return out


def document(
    n_checks: int = 0, failing: int = 1, *, n: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """A metrics document with at least ``n_checks`` checks, the first ``failing`` of the
    accuracy suite's gated checks failing (their thresholds raised past the value)."""
    rng = np.random.default_rng(seed)
    checks = _accuracy_checks(rng, n) + _soundness_checks()
    gated = [c for c in checks if c.threshold is not None and c.suite == "accuracy"]
    for c in gated[:failing]:
        c.threshold = (
            Threshold(min(1.0, c.value + 0.05), "min")
            if c.threshold.direction == "min"
            else Threshold(max(0.0, c.value / 2), "max")
        )
        c.outcome = "fail"
    checks += _fillers(max(0, n_checks - len(checks)), rng)
    correct = rng.random(n) < 0.91
    outcomes = {f"suites/test_demo.py::test_{i}": "passed" for i in range(len(checks))}
    for i, c in enumerate(checks):
        c.nodeid = f"suites/test_demo.py::test_{i}"
        if c.outcome == "fail":
            outcomes[c.nodeid] = "failed"
    return build_document(
        model={
            "name": "demo_cnn",
            "fingerprint": FINGERPRINT,
            "source": "vcheck.report.demo",
            "domain": "fashion_mnist",
            "num_classes": 10,
            "parameters": 468010,
        },
        eval_sets=[{"name": EVAL_SET, "n": n, "fingerprint": "ef" * 32, "source": "synthetic"}],
        settings={"seed": seed, "gate": "point", "confidence": 0.95, "max_samples": None},
        profile={"path": "fixtures/profiles/demo.toml", "sha256": "cd" * 32},
        checks=checks,
        test_outcomes=outcomes,
        artifacts=_artifacts(rng, n),
        problems=[],
        per_sample={
            EVAL_SET: {
                "n": n,
                "ids_sha256": ids_digest([str(i) for i in range(n)]),
                "top1_correct": pack_bits(correct),
            }
        },
        versions_={"vcheck": "demo", "python": "3", "torch": "2", "torchvision": "0"},
    )


def main(argv: list[str] | None = None) -> None:
    from vcheck.report.document import dumps, write_atomic
    from vcheck.report.html import render

    parser = argparse.ArgumentParser(description="Write a synthetic vcheck report.")
    parser.add_argument("html", type=Path)
    parser.add_argument("--checks", type=int, default=0, help="at least this many checks")
    parser.add_argument("--failing", type=int, default=1, help="failing accuracy checks")
    args = parser.parse_args(argv)
    doc = document(args.checks, args.failing)
    write_atomic(args.html, render(doc, 1.0))
    write_atomic(args.html.with_suffix(".metrics.json"), dumps(doc))


if __name__ == "__main__":
    main()
