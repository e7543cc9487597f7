"""vcheck.cache: checksummed, atomic, shareable entries that never fail a run."""

import os
import stat
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from vcheck.cache import ResultCache, cache_key, check_cache_dir
from vcheck.errors import InvalidArgument, VcheckWarning

KEY = cache_key("demo", 1)


@pytest.fixture
def cache(tmp_path):
    return ResultCache(tmp_path / "cache", "demo")


def test_arrays_and_json_round_trip_exactly(cache):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])}
    assert cache.store_arrays(KEY, arrays)
    back = cache.load_arrays(KEY)
    assert set(back) == {"a", "b"}
    for name, value in arrays.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value)
    other = cache_key("demo", 2)
    assert cache.store_json(other, {"verdict": "unsat", "t": 0.5})
    assert cache.load_json(other) == {"verdict": "unsat", "t": 0.5}
    assert cache.load_json(cache_key("never stored")) is None


def test_a_disabled_cache_stores_nothing(tmp_path, monkeypatch):
    # Every place a default cache could go points into tmp_path, which must stay empty.
    monkeypatch.setenv("VCHECK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    off = ResultCache(None, "demo")
    assert not off.enabled and not off.store_arrays(KEY, {"a": np.zeros(1)})
    assert off.load_arrays(KEY) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("offset", [-1, -200, 20])
def test_a_single_flipped_byte_anywhere_is_detected(cache, offset):
    cache.store_arrays(KEY, {"a": np.arange(100, dtype=np.float64)})
    path = cache.path(KEY)
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.warns(VcheckWarning, match="fails its checksum"):
        assert cache.load_arrays(KEY) is None


def test_arrays_recomputes_what_does_not_validate_and_serves_what_does(cache):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.ones(3)}

    first, hit = cache.arrays(KEY, compute)
    assert not hit and calls == [1]
    second, hit = cache.arrays(KEY, compute)
    assert hit and calls == [1] and np.array_equal(first["a"], second["a"])
    with pytest.warns(VcheckWarning, match="wrong shape"):
        _, hit = cache.arrays(KEY, compute, validate=lambda e: e["a"].shape == (4,))
    assert not hit and calls == [1, 1]


def test_entries_are_group_readable_under_the_usual_umask(cache):
    old = os.umask(0o022)
    try:
        cache.store_arrays(KEY, {"a": np.zeros(2)})
    finally:
        os.umask(old)
    mode = stat.S_IMODE(cache.path(KEY).stat().st_mode)
    assert mode == 0o644


def test_a_cache_that_refuses_writes_serves_hits_and_computes_misses(cache, monkeypatch):
    cache.store_arrays(KEY, {"a": np.ones(2)})

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)  # what a read-only mount does (even to root)
    assert np.array_equal(cache.load_arrays(KEY)["a"], np.ones(2))
    with pytest.warns(VcheckWarning, match="cannot write to the cache .*Permission denied"):
        value, hit = cache.arrays(cache_key("miss"), lambda: {"a": np.zeros(1)})
    assert not hit and np.array_equal(value["a"], np.zeros(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once per cache, not per entry
        cache.arrays(cache_key("miss 2"), lambda: {"a": np.zeros(1)})


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_cache_serves_hits_and_computes_misses_without_failing(tmp_path):
    rw = ResultCache(tmp_path, "demo")
    rw.store_arrays(KEY, {"a": np.ones(2)})
    (tmp_path / "demo").chmod(0o555)
    try:
        ro = ResultCache(tmp_path, "demo")
        assert np.array_equal(ro.load_arrays(KEY)["a"], np.ones(2))
        with pytest.warns(VcheckWarning, match="cannot write to the cache"):
            value, hit = ro.arrays(cache_key("miss"), lambda: {"a": np.zeros(1)})
        assert not hit and np.array_equal(value["a"], np.zeros(1))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the unwritable cache is reported once
            ro.arrays(cache_key("miss 2"), lambda: {"a": np.zeros(1)})
    finally:
        (tmp_path / "demo").chmod(0o755)


def test_an_unwritable_location_is_reported_once_and_the_value_still_returned(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = ResultCache(blocker, "demo")
    with pytest.warns(VcheckWarning, match="cannot write to the cache"):
        value, hit = cache.arrays(KEY, lambda: {"a": np.arange(2)})
    assert not hit and value["a"].tolist() == [0, 1]


def test_check_cache_dir_refuses_a_file_but_not_a_missing_or_read_only_dir(tmp_path):
    check_cache_dir(tmp_path / "not" / "yet")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidArgument, match="is a file, not a directory"):
        check_cache_dir(blocker)
    with pytest.raises(InvalidArgument, match="is a file, not a directory"):
        check_cache_dir(blocker / "below")


def test_keys_must_be_digests(cache):
    with pytest.raises(ValueError, match="hex digest"):
        cache.path("../escape")


_RACE = """
import sys, time
from pathlib import Path
import numpy as np
from vcheck.cache import ResultCache

root, key, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
Path(sys.argv[4]).touch()  # ready
while not Path(sys.argv[5]).exists():  # start together
    time.sleep(0.005)

def compute():
    with log.open("a") as f:
        f.write("computed\\n")
    time.sleep(0.5)  # long enough for the other process to ask for the same key
    return {"a": np.arange(1000)}

value, hit = ResultCache(root, "demo").arrays(key, compute)
assert value["a"].tolist() == list(range(1000))
print("hit" if hit else "computed")
"""


def test_concurrent_processes_compute_an_entry_once(tmp_path):
    """Two processes (as two xdist workers) ask for one missing key at the same moment: one
    computes, the other waits for it and reads the stored entry; no torn file is read."""
    log, go = tmp_path / "log.txt", tmp_path / "go"
    procs = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _RACE, str(tmp_path / "c"), KEY, str(log), str(ready),
                 str(go)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.01)
    go.touch()
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == ["computed", "hit"]
    assert log.read_text().count("computed") == 1
    assert [p.name for p in (tmp_path / "c" / "demo").iterdir()] == [f"{KEY}.vc"]  # no temp
    assert [p.name for p in (tmp_path / "c" / ".locks" / "demo").iterdir()] == [f"{KEY}.lock"]
