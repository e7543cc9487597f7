"""Per-model profiles from the weights' published metrics (vcheck.models.published)."""

from __future__ import annotations

import pytest
import torchvision

from vcheck.errors import InvalidArgument
from vcheck.models import published as pub
from vcheck.models.torchvision_models import default_profile
from vcheck.profiles import load_profile

CATEGORIES = tuple(torchvision.models.ConvNeXt_Tiny_Weights.DEFAULT.meta["categories"])


def test_shipped_profiles_are_what_the_generator_writes(tmp_path):
    written = pub.write_profiles(tmp_path)
    assert len(written) >= 70  # every torchvision classifier with ImageNet-1k metrics
    shipped = pub.profiles_dir()
    assert sorted(p.name for p in shipped.glob("*.toml")) == sorted(p.name for p in written)
    stale = [p.name for p in written if (shipped / p.name).read_text() != p.read_text()]
    assert not stale, f"regenerate with python -m vcheck.models.published: {stale[:3]}"


def test_convnext_tiny_profile_holds_the_published_numbers_less_the_tolerance():
    profile = load_profile(default_profile("convnext_tiny"), CATEGORIES)
    acc = profile.accuracy
    assert acc.thresholds["top1"].value == pytest.approx(0.8152)
    assert acc.thresholds["top5"].value == pytest.approx(0.95146, abs=1e-4)
    assert acc.published.values == {"top1": 0.8252, "top5": 0.96146}
    assert acc.published.source == "torchvision weights meta, ConvNeXt_Tiny_Weights.IMAGENET1K_V1"


def test_unknown_weights_keep_the_generic_floors(tmp_path):
    assert default_profile("no_such_arch").name == "imagenet.toml"


def test_note_names_the_source_and_warns_about_subsets():
    p = pub.Published({"top1": 0.8252}, "torchvision weights meta, X")
    assert p.note("top1", 0.5, 200) == (
        "below the published top-1 82.52 (torchvision weights meta, X) less the 1 pp "
        "tolerance; 200 of val's 50,000 images: a subset's interval is wide"
    )
    assert p.note("top1", 0.82, 50_000).startswith("vs the published top-1 82.52")
    assert "a subset" not in p.note("top1", 0.82, 50_000)
    assert p.note("balanced_accuracy", 0.5, 50_000).startswith("below the published top-1")
    assert p.note("ece", 0.5, 10) == ""


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"top1": 0.8}, "needs source"),
        ({"source": "x", "top1": 82.5}, r"published.top1=82.5 .*fraction in \(0, 1\]"),
        ({"source": "x", "acc1": 0.8}, "published.acc1 .*unknown key"),
        ({"source": "x", "tolerance_pp": -1}, "tolerance_pp=-1"),
    ],
)
def test_bad_published_tables_are_one_line_errors(table, message):
    with pytest.raises(InvalidArgument, match=message):
        pub.parse_published(table, "[accuracy] of p.toml")
