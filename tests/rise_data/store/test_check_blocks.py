"""rise-data check reads the per-step scalars in blocks of whole episodes and reports what one pass would."""

from __future__ import annotations

import numpy as np
import pytest

import rise_data.store.check as check
from rise_data.store import open_store


def naive_blocks(length: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Greedy by a loop: add episodes while the block stays within ``rows`` rows (at least one)."""
    out, e0 = [], 0
    while e0 < len(length):
        e1, size = e0 + 1, int(length[e0]) + 1
        while e1 < len(length) and size + int(length[e1]) + 1 <= rows:
            size += int(length[e1]) + 1
            e1 += 1
        out.append((e0, e1))
        e0 = e1
    return out


@pytest.mark.parametrize("rows", [1, 50, 150, 10_000])
def test_episode_blocks_equal_a_loop(rows):
    length = np.random.default_rng(rows).integers(0, 120, 40)
    assert check._episode_blocks(length, rows) == naive_blocks(length, rows)


def damage(path: str) -> None:
    """Break one row of each kind in the last episode (found only by the block that holds it)."""
    s = open_store(path, mode="a")
    ep = s.episodes()
    start, length = int(ep["start"][-1]), int(ep["length"][-1])
    s.group["is_first"][start + 1] = True
    s.group["terminated"][start + 2] = True
    s.group["episode_id"][start + 3] = 0
    s.group["action"][start + length] = 1
    s.group["reward"][start + 4] = 5.0


def test_blocks_report_the_problems_one_pass_does(pong_copy, monkeypatch):
    assert check.check_store(pong_copy, fast=True) == []
    damage(pong_copy)
    monkeypatch.setattr(check, "ROW_BLOCK", 1 << 40)
    whole = check.check_store(pong_copy, fast=True)
    monkeypatch.setattr(check, "ROW_BLOCK", 1)  # one episode per block
    assert open_store(pong_copy).num_episodes > 2
    blocks = check.check_store(pong_copy, fast=True)
    assert sorted(map(str, blocks)) == sorted(map(str, whole))
    wheres = {p.where for p in blocks}
    assert {"is_first", "terminated", "episode_id", "action/reward", "episodes/return"} <= wheres
    row = int(open_store(pong_copy).episodes()["start"][-1]) + 1
    assert f"disagrees with the episode index at row {row}" in str(blocks)
