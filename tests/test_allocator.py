"""The malloc tuning applies once on glibc and changes no value."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bench.models import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_thresholds_once():
    # A fresh interpreter: this test process may have applied it already.
    code = ("from bench.models import allocator as a; "
            "print(a.keep_freed_memory(), a.keep_freed_memory(), a._applied)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "True"]


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
    assert allocator._applied is False  # remembered: not retried
