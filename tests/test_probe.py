"""The memory probe (slow, CPU, minutes): with K > delay the agent recalls the cue; with K = 0 it cannot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_memory_probe(tmp_path):
    path = Path(__file__).parents[1] / "pipelines" / "memory_probe.py"
    spec = importlib.util.spec_from_file_location("memory_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    success = probe.run_probe(tmp_path / "probe", delay=30, ks=[40, 0], updates=2000, episodes=300)
    assert success[40] >= 0.95
    assert success[0] <= 0.65  # chance is 0.5; 100 episodes put 3 standard deviations at 0.65
