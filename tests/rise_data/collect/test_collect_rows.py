"""The rows `collect` stores equal a naive per-env loop over the same env, seed and random policy."""

from __future__ import annotations

import numpy as np
import pytest

from rise_data.collect import CollectConfig, collect
from rise_data.collect import rollout as rollout_module
from rise_data.collect.policies import RandomPolicy
from rise_data.envs import env_spec, make_env
from rise_data.store import open_store

# the shipped T-maze: 50-90-step episodes under random actions, ending at the junction or the step limit
ENV, OPTIONS = "rise/TMaze-v0", {"length": 24, "max_steps": 90}
N_ENVS, STEPS, SEED = 3, 400, 11


def naive_store_episodes(steps: int) -> list[dict]:
    """Collect's loop written plainly: one action per step from the same policy, episodes listed as they
    end (env order within a step), then the running ones cut as truncated, as collect orders them."""
    spec = env_spec(ENV, **OPTIONS)
    env, policy = make_env(spec, num_envs=N_ENVS), RandomPolicy(spec["n_actions"], SEED)
    step = env.reset(seed=SEED)
    actions = policy.act(step)
    new = lambda i: {"obs": [step.obs[i]], "frame": [step.frame[i]], "action": [], "reward": []}  # noqa: E731
    cur, out, filed = [new(i) for i in range(N_ENVS)], [], 0
    while filed < steps:
        taken = actions
        step = env.step(taken)
        actions = policy.act(step)
        for i in range(N_ENVS):
            if step.is_first[i]:
                cur[i] = new(i)
                continue
            e = cur[i]
            e["action"].append(taken[i])
            e["reward"].append(step.reward[i])
            e["obs"].append(step.obs[i])
            e["frame"].append(step.frame[i])
            filed += 1
            if step.terminated[i] or step.truncated[i]:
                out.append({**e, "env": i, "terminated": bool(step.terminated[i])})
                cur[i] = None
    env.close()
    return out + [{**e, "env": i, "terminated": False} for i, e in enumerate(cur) if e and e["action"]]


@pytest.mark.parametrize("block_rows", [rollout_module.BLOCK_ROWS, 16])
def test_store_rows_equal_naive_loop(tmp_path, monkeypatch, block_rows):
    """Every row, action, reward and ending in store order; 16-row blocks pack most of each episode."""
    monkeypatch.setattr(rollout_module, "BLOCK_ROWS", block_rows)
    path = str(tmp_path / "t.zarr")
    config = CollectConfig(
        ENV, path, steps=STEPS, num_envs=N_ENVS, seed=SEED, env_options=OPTIONS, progress=False
    )
    collect(config)
    s = open_store(path)
    want = naive_store_episodes(STEPS)
    ep = s.episodes()
    assert s.num_episodes == len(want) >= 6 and any(w["terminated"] for w in want)
    assert max(len(w["obs"]) for w in want) > rollout_module.BLOCK_ROWS  # episodes span blocks
    obs, frame = s.read("obs"), s.read("frame")
    action, reward, terminated = s.read("action"), s.read("reward"), s.read("terminated")
    for k, w in enumerate(want):
        a, n = int(ep["start"][k]), int(ep["length"][k])
        assert (int(ep["env_index"][k]), n) == (w["env"], len(w["action"])), k
        assert np.array_equal(obs[a : a + n + 1], np.stack(w["obs"])), k
        assert np.array_equal(frame[a : a + n + 1], np.stack(w["frame"])), k
        assert np.array_equal(action[a : a + n], w["action"]) and np.array_equal(
            reward[a : a + n], w["reward"]
        )
        assert bool(terminated[a + n]) == w["terminated"]
