"""AutoAttack's result on the adversarially trained zoo model, stored as a test fixture.

AutoAttack (torchattacks' implementation, ``version="standard"``: APGD-CE, APGD-T, FAB-T,
Square) takes minutes on 2 cores, too long to run in every ``make test``. This script runs it
once on the seeded class-stratified sample the adversarial suite draws and stores, per
sample, whether AutoAttack broke it and the adversarial image it found
(``fixtures/adversarial/autoattack_<model>.npz``). ``tests/test_adversarial_trained.py``
re-checks every stored image against the model (within epsilon, misclassified) before
comparing vcheck's live robust accuracy with AutoAttack's, so a stale or wrong fixture fails
the test instead of passing it.

    .venv/bin/python benchmarks/autoattack_reference.py [--samples 100] [--eps 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO / "fixtures" / "adversarial"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fmnist_adv")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    import torchattacks

    from vcheck.data.fashion_mnist import load_fashion_mnist
    from vcheck.evaluate.adversarial import select_samples
    from vcheck.models import resolve_model

    torch.manual_seed(args.seed)
    model = resolve_model(args.model).load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    idx = np.asarray(select_samples(data.labels, args.samples, args.seed))
    x, y = data.images(idx.tolist()), data.labels[idx]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    start, cpu = time.perf_counter(), time.process_time()
    aa = torchattacks.AutoAttack(
        model.module, norm="Linf", eps=args.eps, version="standard", n_classes=10, seed=args.seed
    )
    adv = aa(x, y).detach()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    with torch.no_grad():
        clean_ok = (model.module(x).argmax(1) == y).numpy()
        robust = (model.module(adv).argmax(1) == y).numpy()
    assert float((adv - x).abs().max()) <= args.eps + 1e-6
    robust &= clean_ok
    broken = clean_ok & ~robust  # AutoAttack's adversarial images for these
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    out = FIXTURE_DIR / f"autoattack_{args.model}.npz"
    np.savez_compressed(
        out,
        ids=idx,
        labels=y.numpy(),
        clean_correct=clean_ok,
        robust=robust,
        broken_ids=idx[broken],
        broken_images=adv[torch.from_numpy(broken)].numpy().astype(np.float32),
        eps=np.float64(args.eps),
        seed=np.int64(args.seed),
        model=np.str_(args.model),
        fingerprint=np.str_(model.fingerprint),
        attack=np.str_(f"torchattacks {torchattacks.__version__} AutoAttack standard Linf"),
    )
    print(
        f"AutoAttack (L-inf {args.eps:g}) on {args.model}, {len(idx)} samples: clean accuracy "
        f"{clean_ok.mean():.3f}, robust accuracy {robust.mean():.3f}; {wall:.0f} s wall, "
        f"{cpu:.0f} s CPU; wrote {out.relative_to(REPO)}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
