"""The built-in verifiers' verdicts, computed in background worker processes.

The verifiers run one thread each (tiny networks: more threads only add overhead), so in the
run's own process they kept one core busy and left the other idle for minutes. At collection
the pool starts every alpha-CROWN and branch-and-bound (verifier, benchmark) pair whose
verdicts are not cached yet, largest first, in worker processes (one per core by default;
``verifier_workers`` in the config sets the number, 0 keeps the in-process path). The other
suites run meanwhile in the main process; the soundness suite then takes each pair's verdicts
as they finish.

Each worker runs exactly what the in-process path runs (:func:`run_verifier`, one thread, the
same verdict cache), so verdicts, cache entries and a warm rerun are the same: a warm run finds
every pair cached and starts no process. External commands and Python verifier objects always
run in the main process (they may hold state a new process would not have), and so do IBP
and CROWN (a fraction of a second per network).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vcheck.progress import default_interval
from vcheck.verify.external import Result

if TYPE_CHECKING:
    from vcheck.soundness.runner import Benchmark

# The verifiers worth a process: seconds per network. IBP and CROWN take a fraction of a
# second per network, less than a worker takes to import torch, so they stay in-process.
# Relative cost per instance and parameter, to start the longest pairs first (measured on the
# shipped benchmark: alpha-CROWN optimises 20 steps per instance, BaB splits).
POOLED = {"alpha-CROWN": 1.0, "BaB": 0.5}


@dataclass(frozen=True)
class Job:
    """One built-in verifier over one benchmark folder."""

    spec: str
    directory: Path
    timeout: float
    bab_max_domains: int
    cache_dir: Path | None
    instance_ids: tuple[str, ...]  # the run's selection (runner.select_instances)


def _lower_priority() -> None:
    """Worker start: yield the cores to the main process's suites. Their torch operations
    run on every core and wait for the slowest thread, so a verifier taking a core from them
    at equal priority stalled them (adversarial suite 18 -> 103 s); at nice 10 the workers
    mostly use what the suites leave idle, and both cores once the suites are done."""
    with contextlib.suppress(OSError):  # not permitted: run at the same priority
        os.nice(10)


def _verify(job: Job) -> tuple[dict[str, Result], float]:
    """Worker: the pair's verdicts (as :func:`run_verifier` gives them) and the seconds taken."""
    import torch

    from vcheck.soundness.runner import (
        keep_instances,
        load_benchmark,
        resolve_verifier,
        run_verifier,
    )

    torch.set_num_threads(1)  # as in-process: tiny networks, and one thread is deterministic
    start = time.perf_counter()
    verifier = resolve_verifier(job.spec, timeout=job.timeout, bab_max_domains=job.bab_max_domains)
    bench = keep_instances(load_benchmark(job.directory), job.instance_ids)
    verdicts = run_verifier(verifier, bench, job.cache_dir)
    return verdicts, time.perf_counter() - start


def _cost(job: Job, parameters: int, instances: int) -> float:
    return POOLED[job.spec] * parameters * instances


class VerdictPool:
    """Worker processes verifying (spec, benchmark) pairs; :meth:`verdicts` waits for one.

    Args:
        jobs: the pairs to verify, with each one's (parameters, instances) for ordering.
        workers: processes to start (at most one per job).
        write: progress lines (the session's ``write_line``).
    """

    def __init__(
        self,
        jobs: Iterable[tuple[Job, int, int]],
        workers: int,
        write: Callable[[str], None],
    ) -> None:
        ordered = sorted(jobs, key=lambda j: -_cost(*j))
        self.write = write
        self.jobs = {(job.spec, job.directory.name): job for job, _, _ in ordered}
        self.workers = max(1, min(workers, len(ordered)))
        # spawn: a forked child of a process that ran torch's OpenMP threads can hang.
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_lower_priority
        )
        self._futures: dict[tuple[str, str], Future] = {
            key: self._executor.submit(_verify, job) for key, job in self.jobs.items()
        }
        write(
            f"vcheck: verifying {len(ordered)} (verifier, network) pairs in {self.workers} "
            "background processes while the other suites run"
        )

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._futures

    def verdicts(self, spec: str, benchmark: str) -> dict[str, Result]:
        """The pair's verdicts, waiting for its worker with a progress line every few
        seconds; computed in this process if the pool broke (a worker was killed)."""
        key = (spec, benchmark)
        future = self._futures[key]
        interval, start = default_interval(), time.perf_counter()
        while not future.done():
            wait([future], timeout=interval, return_when=FIRST_COMPLETED)
            if not future.done():
                done = sum(f.done() for f in self._futures.values())
                self.write(
                    f"vcheck: waiting for {spec} on {benchmark} ({time.perf_counter() - start:.0f}"
                    f" s; {done}/{len(self._futures)} pairs verified in the background)"
                )
        try:
            results, seconds = future.result()
        except BrokenProcessPool:
            self.write(f"vcheck: background verifier process died; {spec} on {benchmark} here")
            return _verify(self.jobs[key])[0]
        self.write(f"vcheck: {spec} on {benchmark}: {len(results)} instances in {seconds:.1f} s")
        return results

    def close(self) -> None:
        """Stop the workers now (a run that ends early or is interrupted does not wait for
        them; pairs already verified are in the cache)."""
        for future in self._futures.values():
            future.cancel()
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def start_pool(
    pairs: Iterable[tuple[str, Benchmark]],
    *,
    timeout: float,
    bab_max_domains: int,
    cache_dir: Path | None,
    workers: int | None,
    write: Callable[[str], None],
) -> VerdictPool | None:
    """A pool verifying the (spec, benchmark) pairs of :data:`POOLED` verifiers not yet
    cached; None when there is nothing to verify (a warm run), ``workers`` is 0, or auto_LiRPA
    is missing (the suite then skips as before)."""
    from vcheck.soundness.runner import has_cached_verdicts, resolve_verifier
    from vcheck.verify._lirpa_compat import import_auto_lirpa
    from vcheck.verify.base import as_module

    workers = default_workers() if workers is None else workers
    if workers == 0:
        return None
    jobs, seen = [], set()
    for spec, bench in pairs:
        if spec not in POOLED or (spec, bench.name) in seen:
            continue
        seen.add((spec, bench.name))
        verifier = resolve_verifier(spec, timeout=timeout, bab_max_domains=bab_max_domains)
        if has_cached_verdicts(verifier, bench, cache_dir):
            continue
        parameters = sum(p.numel() for p in as_module(bench.network).parameters())
        ids = tuple(i.id for i in bench.network.instances)
        job = Job(spec, bench.directory, timeout, bab_max_domains, cache_dir, ids)
        jobs.append((job, parameters, len(bench.network.instances)))
    if not jobs:  # warm: every verdict cached, and auto_LiRPA need not even be imported
        return None
    try:
        import_auto_lirpa()
    except ImportError:
        return None
    return VerdictPool(jobs, workers, write)


# -- the soundness suite's session glue ---------------------------------------------------------
def benchmark_root(session) -> Path:
    """The folder of benchmark folders: ``--soundness-dir`` or the shipped one."""
    from vcheck.models.zoo import fixtures_dir

    return session.settings.soundness_dir or fixtures_dir() / "soundness"


def session_benchmarks(session) -> dict[str, Benchmark]:
    """The run's benchmarks by name, loaded once, narrowed to ``--soundness-instances``."""
    return session.memo(("soundness", "benchmarks"), lambda: _load_selected(session))


def _load_selected(session) -> dict[str, Benchmark]:
    from vcheck.soundness.runner import load_benchmarks, select_instances

    per_kind = session.settings.soundness_instances
    full = load_benchmarks(benchmark_root(session))
    chosen = [select_instances(b, per_kind) for b in full]
    total = sum(len(b.network.instances) for b in full)
    kept = sum(len(b.network.instances) for b in chosen)
    if kept < total:
        session.write_line(
            f"vcheck: soundness on {kept} of the benchmark's {total} instances (the first "
            f"{per_kind} of each kind per network); --soundness-instances=all runs every one"
        )
    return {b.name: b for b in chosen}


def session_cache(session, namespace: str) -> Path | None:
    """The run's cache folder for ``namespace`` (None under --no-cache)."""
    return None if session.settings.no_cache else session.settings.cache_dir / namespace


def start_session_pool(session, items: Iterable) -> VerdictPool | None:
    """Start the built-in verifiers of the collected soundness tests in the background (the
    suites' conftest calls this once collection is done). Not under pytest-xdist, whose
    workers each collect every test: there each verdict is computed where it is needed."""
    key = ("soundness", "pool")
    if hasattr(session.config, "workerinput"):
        return session.memo(key, lambda: None)
    pairs = [
        (item.callspec.params["verifier_spec"], item.callspec.params["benchmark_name"])
        for item in items
        if "verdicts" in getattr(item, "fixturenames", ())
        and isinstance(item.callspec.params.get("benchmark_name"), str)
        and item.callspec.params["benchmark_name"] != "nothing-to-check"
    ]

    def start() -> VerdictPool | None:
        if not pairs:
            return None
        session.load()  # a bad model or data path stops the run here, before any process starts
        benchmarks = session_benchmarks(session)
        budget = session.profile.soundness
        pool = start_pool(
            [(spec, benchmarks[name]) for spec, name in pairs],
            timeout=budget.timeout,
            bab_max_domains=budget.bab_max_domains,
            cache_dir=session_cache(session, "verdicts"),
            workers=session.settings.verifier_workers,
            write=session.write_line,
        )
        if pool is not None:
            session.config.add_cleanup(pool.close)
        return pool

    return session.memo(key, start)


def session_pool(session) -> VerdictPool | None:
    """The pool started at collection (None: verify in this process)."""
    return session.memo(("soundness", "pool"), lambda: None)
