"""Progress lines: frequent on a terminal, a few lines in a CI log, always the final one."""

from __future__ import annotations

import io
import sys

import pytest

from vcheck.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "expected"), [(_Terminal(), 2.0), (io.StringIO(), 30.0)])
def test_the_default_interval_follows_whether_stdout_is_a_terminal(monkeypatch, stream, expected):
    monkeypatch.setattr(sys, "__stdout__", stream)
    assert Progress("x", total=10, write=lambda line: None).interval == expected


def test_a_log_gets_the_first_and_last_lines_of_a_fast_pass(monkeypatch):
    monkeypatch.setattr(sys, "__stdout__", io.StringIO())
    lines: list[str] = []
    p = Progress("vcheck: m on d", total=100, write=lines.append)
    for _ in range(100):
        p.update(1)
    assert len(lines) == 2
    assert lines[0].startswith("vcheck: m on d: 1/100 (1%)")
    assert lines[-1].startswith("vcheck: m on d: 100/100 (100%)")
