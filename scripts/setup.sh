#!/usr/bin/env bash
# Idempotent set-up used by `make run` and `make test`: a virtual environment with torch,
# torchvision and vcheck, plus the Fashion-MNIST data (Debian package where apt exists,
# torchvision's downloader into the vcheck cache elsewhere) and Debian's chromium for the
# report's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"   # the builds this machine kind serves locally
FMNIST_DEB_DIR=/usr/share/datasets/fashion-mnist

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
    echo "setup: installing $TORCH_PINS (about 75 s)"
    "$PY" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $TORCH_PINS
fi

stamp="$VENV/.vcheck-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$0" -nt "$stamp" ]; then
    echo "setup: installing vcheck, its test tools and auto_LiRPA"
    "$PY" -m pip install -q -e ".[test]"
    # auto-lirpa 0.3's metadata pins torch<1.13; its runtime needs are appdirs and tqdm.
    # vcheck/verify/_lirpa_compat.py patches what torch 2.14 removed.
    "$PY" -m pip install -q --no-deps auto-lirpa==0.3 appdirs tqdm
    touch "$stamp"
fi

if [ ! -f "$FMNIST_DEB_DIR/t10k-images-idx3-ubyte.gz" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        echo "setup: installing Debian package dataset-fashion-mnist"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        cache="${VCHECK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vcheck}/data"
        echo "setup: no apt-get; downloading Fashion-MNIST into $cache with torchvision"
        "$PY" -c "import sys, torchvision; torchvision.datasets.FashionMNIST(sys.argv[1], train=True, download=True); torchvision.datasets.FashionMNIST(sys.argv[1], train=False, download=True)" "$cache"
    fi
fi

# Headless Chromium opens the HTML report in tests/test_report_browser.py (which fails under
# CI=true when it is missing). Debian's package: a browser download by a test tool fails here.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian package chromium (headless browser tests of the report)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
