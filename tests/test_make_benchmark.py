"""The benchmark generator's command line: what it lists, writes and refuses."""

import pytest

from vcheck.soundness import make_benchmark
from vcheck.soundness.vnncomp import read_benchmark


def test_list_names_the_shipped_grid_and_the_trained_one(capsys):
    assert make_benchmark.main(["--list"]) == 0
    shipped = capsys.readouterr().out.split()
    assert shipped == [s.name for s in make_benchmark.GRID] + ["edge_ties_3class"]
    assert {
        "cnn_avgpool_1x5x5_eps0.02",
        "cnn_sigmoid_1x5x5_eps0.02",
        "cnn_tanh_1x5x5_eps0.02",
        "cnn_1conv_1x5x5_eps0.05",
    } <= set(shipped)
    assert make_benchmark.main(["--generator", "trained", "--list"]) == 0
    assert capsys.readouterr().out.split() == [s.name for s in make_benchmark.TRAINED_GRID]


def test_writes_the_edge_case_network_in_vnncomp_layout(tmp_path, capsys):
    assert make_benchmark.main(["--only", "edge_ties_3class", "--out", str(tmp_path)]) == 0
    assert "edge_ties_3class: 0 hidden counterexamples, 2 clean" in capsys.readouterr().out
    net = read_benchmark(tmp_path / "edge_ties_3class")
    assert net.num_classes == 3
    assert {i.id: i.ground_truth for i in net.instances} == {
        "clean_tie": "sat",
        "clean_class_1_only": "sat",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "mlp_typo"], "not in the shipped grid: mlp_typo (see --list)"),
        (["--device", "cuda"], "--device and --epochs apply to --generator trained only"),
    ],
)
def test_mistakes_are_one_line_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_benchmark.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
