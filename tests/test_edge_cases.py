"""The hand-built edge-case network: its ties are exact in every arithmetic, sound verifiers
never prove its falsified instances, and the two bugs the needle networks miss do."""

import numpy as np
import pytest
import torch

from vcheck.soundness import edge_cases
from vcheck.soundness.attacks import margin
from vcheck.soundness.vnncomp import onnx_logits, write_benchmark
from vcheck.verify.bab import BranchAndBound
from vcheck.verify.bounds import METHODS
from vcheck.verify.lirpa import LirpaVerifier
from vcheck.verify.mutants import DropTarget, NonStrictComparison


@pytest.fixture(scope="module")
def edge():
    return edge_cases.build()


def by_id(net):
    return {i.id: i for i in net.instances}


def test_the_tie_is_exact_in_float32_float64_and_onnx_runtime(edge, tmp_path):
    tie = by_id(edge)["clean_tie"]
    x = torch.from_numpy(tie.x_star)[None]
    assert float(margin(edge.net, x, torch.tensor([0]))) == 0.0
    assert float(margin(edge.net.double(), x.double(), torch.tensor([0]))) == 0.0
    edge.net.float()
    write_benchmark(edge, tmp_path / "edge")
    logits = onnx_logits(tmp_path / "edge", tie.x_star[None])[0]
    assert logits[0] == logits[1] == logits[2] == np.float32(1.0)


@pytest.mark.parametrize("method", METHODS)
def test_sound_verifiers_never_prove_either_instance(edge, method):
    for inst in edge.instances:
        assert LirpaVerifier(method).verify(edge, inst).verdict == "unknown"


def test_branch_and_bound_finds_both_counterexamples(edge):
    for inst in edge.instances:
        result = BranchAndBound("CROWN").verify(edge, inst)
        assert result.verdict == "sat"
        assert (
            float(
                margin(
                    edge.net,
                    torch.tensor(result.x, dtype=torch.float32).view(1, 1),
                    torch.tensor([0]),
                )
            )
            <= 0
        )


def test_non_strict_comparison_proves_the_tie_and_drop_target_the_one_class_instance(edge):
    inst = by_id(edge)
    for method in METHODS:
        assert NonStrictComparison(method).verify(edge, inst["clean_tie"]).verdict == "unsat"
    drop = DropTarget(LirpaVerifier("CROWN"))  # drops class 1, the only violating one
    assert drop.verify(edge, inst["clean_class_1_only"]).verdict == "unsat"
    assert drop.verify(edge, inst["clean_tie"]).verdict == "unknown"  # class 2 ties too
