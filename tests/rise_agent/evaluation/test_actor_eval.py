"""Actor windows vs naive logs, ε schedule, checkpoints, evaluation, scores, loading and the collect policy."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from rise_agent.acting.actor import Actor, epsilon_schedule
from rise_agent.acting.policy import from_checkpoint
from rise_agent.evaluation.evaluate import btr_eval_epsilon, evaluate, load_agent
from rise_agent.evaluation.scores import aggregate, score_note, summary, write_scores_csv
from rise_agent.evaluation.video import write_video
from rise_agent.network import NetworkConfig, make_network
from rise_agent.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from rise_data.collect.policies import PolicyError
from rise_data.encode.encoders import make_encoder
from rise_data.encode.spec import EncoderError
from rise_data.envs import Step, env_spec, make_env
from rise_data.envs.atari_scores import (
    ATARI_DATA,
    STANDARD_PROTOCOL,
    atari_reference_scores,
    atari_score_key,
    human_normalized,
    iqm,
    iqm_with_ci,
)

CUE = "rise/CueMemory-v0"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def cue_spec() -> dict:
    return env_spec(CUE, delay=3)  # 6-row episodes: several resets in a few steps


def small_net(k: int, n_actions: int = 3, embed_dim: int = 256):
    cfg = NetworkConfig(
        n_actions=n_actions,
        context_len=k,
        embed_dim=embed_dim,
        lstm_hidden=16,
        impala_channels=(8, 8, 8),
        hidden=16,
    )
    return make_network(cfg)


def naive_window(
    log: list, length: int, shape: tuple, dtype, repeat_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last ``length`` items of the current episode, current item last, left-padded with zeros (context)
    or with ``repeat_first`` the episode's first item (BTR's frame stack)."""
    items = log[-length:]
    pad = length - len(items)
    window = torch.zeros((length, *shape), dtype=dtype)
    mask = torch.zeros(length, dtype=torch.bool)
    for j in range(pad if repeat_first else 0):  # pad > 0: the episode's first item is in the window
        window[j] = items[0]
    for j, x in enumerate(items):
        window[pad + j] = x
        mask[pad + j] = True
    return window, mask


def check_against_logs(actor: Actor, emb_logs: list, obs_logs: list, k: int) -> None:
    ctx, mask = actor.context()
    frames = actor.frames()
    for i in range(actor.num_envs):
        want_c, want_m = naive_window(emb_logs[i], k, (ctx.shape[-1],), torch.float16)
        torch.testing.assert_close(ctx[i], want_c, atol=0, rtol=0)
        assert torch.equal(mask[i], want_m)
        want_f, _ = naive_window(obs_logs[i], 4, (84, 84), torch.uint8, repeat_first=True)
        assert torch.equal(frames[i], want_f)


# ---------------------------------------------------------------------------------------------------
# Actor


@pytest.mark.parametrize("k", [4, 8])
def test_actor_context_matches_naive_reconstruction(cue_spec, k):
    env = make_env(cue_spec, num_envs=3)
    encoder = make_encoder("downsample")
    actor = Actor(small_net(k), encoder, 3)
    rng = np.random.default_rng(0)
    emb_logs: list[list] = [[] for _ in range(3)]
    obs_logs: list[list] = [[] for _ in range(3)]
    step = env.reset(seed=0)
    resets = 0
    for _ in range(15):
        emb = actor.observe(step)
        assert emb.shape == (3, 256) and emb.dtype == torch.float16
        for i in range(3):
            if step.is_first[i]:
                emb_logs[i], obs_logs[i] = [], []
                resets += 1
            # embedded on its own, one row at a time: the batched embedding must agree
            emb_logs[i].append(encoder(step.frame[i : i + 1])[0].half())
            obs_logs[i].append(torch.from_numpy(step.obs[i].copy()))
        check_against_logs(actor, emb_logs, obs_logs, k)
        actions = actor.act(0.5, rng)
        assert actions.shape == (3,) and actions.dtype == np.int64 and ((actions >= 0) & (actions < 3)).all()
        step = env.step(actions)
    env.close()
    assert resets >= 6  # the reset step plus at least one autoreset per env


def test_actor_staggered_resets_and_obs_source():
    # synthetic steps: each env restarts at its own times; the encoder reads the gray obs
    e, k = 4, 5
    encoder = make_encoder("downsample", source="obs")
    actor = Actor(small_net(k), encoder, e)
    rng = np.random.default_rng(1)
    emb_logs: list[list] = [[] for _ in range(e)]
    obs_logs: list[list] = [[] for _ in range(e)]
    for t in range(20):
        obs = rng.integers(0, 256, (e, 84, 84), dtype=np.uint8)
        first = np.ones(e, bool) if t == 0 else rng.random(e) < 0.2
        z = np.zeros(e, bool)
        actor.observe(Step(obs, None, np.zeros(e, np.float32), z, z, first))
        for i in range(e):
            if first[i]:
                emb_logs[i], obs_logs[i] = [], []
            emb_logs[i].append(encoder(obs[i : i + 1])[0].half())
            obs_logs[i].append(torch.from_numpy(obs[i].copy()))
        check_against_logs(actor, emb_logs, obs_logs, k)


def test_actor_plain_btr_and_refusals(cue_spec):
    env = make_env(cue_spec, num_envs=2)
    actor = Actor(small_net(0), None, 2)
    with pytest.raises(RuntimeError):
        actor.act(0.0, np.random.default_rng(0))
    step = env.reset(seed=0)
    assert actor.observe(step) is None
    assert actor.context() == (None, None)
    greedy = [actor.act(0.0, np.random.default_rng(0), greedy_noise_off=True) for _ in range(2)]
    np.testing.assert_array_equal(greedy[0], greedy[1])
    # ε = 1: the actions are exactly rng's uniform draws
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    explore = actor.act(1.0, rng_a)
    rng_b.random(2)
    np.testing.assert_array_equal(explore, rng_b.integers(3, size=2))
    env.close()
    with pytest.raises(ValueError, match="encoder"):
        Actor(small_net(4), None, 2)
    with pytest.raises(ValueError, match="expects"):
        Actor(small_net(4, embed_dim=16), make_encoder("downsample"), 2)
    with pytest.raises(ValueError, match="first observed step"):
        z = np.zeros(2, bool)
        Actor(small_net(0), None, 2).observe(Step(np.zeros((2, 84, 84), np.uint8), None, z, z, z, z))


def naive_btr_epsilon(steps: int, start: float, end: float, decay_steps: int) -> list[float]:
    """BTR's EpsilonGreedy loop (Agent.py:22-30): ε used at each step, then ``update_eps`` per transition."""
    eps, out = start, []
    for _ in range(steps):
        out.append(eps)
        eps = max(eps - (eps - end) / decay_steps, end)
    return out


@pytest.mark.parametrize("start,end,decay", [(1.0, 0.01, 100), (0.5, 0.1, 7), (1.0, 0.0, 1), (0.05, 0.2, 10)])
def test_epsilon_schedule_matches_btr_loop(start, end, decay):
    expect = naive_btr_epsilon(400, start, end, decay)
    got = [epsilon_schedule(k, start, end, decay) for k in range(400)]
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)


def test_epsilon_schedule_btr_values():
    # exponential with time constant 2M env steps (8M frames), not a linear ramp to 0.01 at 2M
    assert epsilon_schedule(0) == 1.0
    assert epsilon_schedule(2_000_000) == pytest.approx(0.01 + 0.99 * math.exp(-1), rel=1e-5)
    assert epsilon_schedule(8_000_000) == pytest.approx(0.01 + 0.99 * math.exp(-4), rel=1e-5)
    assert epsilon_schedule(24_999_999) == pytest.approx(0.01, abs=1e-5)
    assert epsilon_schedule(25_000_000, disable_after=25_000_000) == 0.0
    assert epsilon_schedule(24_999_999, disable_after=25_000_000) > 0.01
    assert epsilon_schedule(5, decay_steps=0) == 0.01


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_and_rng(tmp_path):
    net = small_net(4)
    rng = np.random.default_rng(7)
    rng.random(3)
    random.seed(3)
    path = tmp_path / "run" / "ck.pt"
    payload = {
        "network": net.state_dict(),
        "network_config": json.dumps(asdict(net.config)),
        "counters": json.dumps({"updates": 5}),
        "step": 5,
        "ratio": 0.5,
        "nothing": None,
        "rng": capture_rng(rng),
    }
    save_checkpoint(path, payload)
    assert path.is_file() and not (tmp_path / "run" / "ck.pt.tmp").exists()
    expect = (torch.rand(3), rng.random(3), random.random())

    raw = torch.load(path, weights_only=True)  # loadable without unpickling arbitrary objects
    assert raw["step"] == 5 and raw["nothing"] is None
    ck = load_checkpoint(path, "cpu")
    assert ck["ratio"] == 0.5 and json.loads(ck["counters"]) == {"updates": 5}
    for name, value in net.state_dict().items():
        assert torch.equal(ck["network"][name], value)
    restored = restore_rng(ck["rng"])
    assert torch.equal(torch.rand(3), expect[0])
    np.testing.assert_array_equal(restored.random(3), expect[1])
    assert random.random() == expect[2]

    save_checkpoint(path, {"step": 6})  # overwrite in place
    assert load_checkpoint(path)["step"] == 6


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="ndarray"):
        save_checkpoint(tmp_path / "x.pt", {"a": {"b": np.zeros(3)}})
    assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------------------------------------------
# Evaluation and scores


def test_evaluate_runs_whole_episodes_and_records(cue_spec, tmp_path):
    net = small_net(8)
    net.train()
    gif = tmp_path / "ep.gif"
    out = evaluate(net, make_encoder("downsample"), cue_spec, episodes=3, num_envs=2, seed=1, record=str(gif))
    assert net.training  # mode restored
    assert out["episodes"] == 3 and len(out["returns"]) == 3 and out["cut"] == 0
    assert all(r in (-1.0, 1.0) for r in out["returns"])  # one ±1 reward at the query
    assert out["lengths"] == [5, 5, 5]
    assert out["mean"] == pytest.approx(np.mean(out["returns"])) and out["std"] >= 0
    assert out["human_normalized"] is None  # not an Atari game
    with Image.open(gif) as im:
        # 6 observations; the terminal frame repeats the query frame and Pillow merges equal neighbours
        assert im.n_frames == 5
    again = evaluate(net, make_encoder("downsample"), cue_spec, episodes=3, num_envs=2, seed=1)
    assert again["returns"] == out["returns"]  # seeded: envs, ε draws and IQN taus


def test_evaluation_draws_from_its_own_generators(cue_spec, monkeypatch):
    """IQN's taus come from the evaluation's own torch.Generator: the same seed gives the same taus while
    another thread draws from torch's global RNG (as the actor thread does during training), and the
    global RNG is neither reseeded nor advanced."""
    import threading

    from rise_agent.network import RiseNetwork

    drawn: list[torch.Tensor] = []
    real = RiseNetwork.quantiles

    def spy(self, z, n_tau=8, taus=None, advantages_only=False):
        q, t = real(self, z, n_tau, taus, advantages_only)
        drawn.append(t.clone())
        return q, t

    monkeypatch.setattr(RiseNetwork, "quantiles", spy)
    net, enc = small_net(8), make_encoder("downsample")

    def run(seed: int) -> torch.Tensor:
        drawn.clear()
        stop = threading.Event()
        actor = threading.Thread(target=lambda: [torch.rand(64) for _ in iter(stop.is_set, True)])
        actor.start()
        try:
            evaluate(net, enc, cue_spec, episodes=4, num_envs=2, seed=seed)
        finally:
            stop.set()
            actor.join()
        return torch.cat(drawn)

    first = run(1)
    assert torch.equal(run(1), first) and not torch.equal(run(2), first)

    def no_reseed(*a, **k):
        raise AssertionError("evaluation touched torch's global RNG")

    monkeypatch.setattr(torch, "manual_seed", no_reseed)
    monkeypatch.setattr(torch.random, "fork_rng", no_reseed)
    state = torch.get_rng_state()
    evaluate(net, enc, cue_spec, episodes=2, num_envs=2, seed=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluate_max_steps_cuts_episodes(cue_spec):
    out = evaluate(small_net(0), None, cue_spec, episodes=2, epsilon=0.5, max_steps=3)
    assert out["cut"] == 2 and out["lengths"] == [3, 3] and out["returns"] == [0.0, 0.0]


def test_write_video_mp4_and_refusal(tmp_path):
    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(5)]
    assert write_video(tmp_path / "v.mp4", frames).stat().st_size > 0
    with pytest.raises(ValueError, match=".gif or .mp4"):
        write_video(tmp_path / "v.avi", frames)


def test_human_normalized():
    assert len(ATARI_DATA) == 57
    assert human_normalized("ALE/Pong-v5", 14.6) == pytest.approx(1.0)
    assert human_normalized("ALE/Pong-v5", -20.7) == pytest.approx(0.0)
    assert human_normalized("pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("ALE/MsPacman-v5", 307.3) == pytest.approx(0.0)
    assert human_normalized("ALE/Breakout-v5", 30.5) == pytest.approx(1.0)
    assert human_normalized("ALE/UpNDown-v5", 11693.2) == pytest.approx(1.0)
    assert human_normalized("rise/CueMemory-v0", 1.0) is None


def test_all_57_games_round_trip_from_ale_ids():
    """Every table game is an ale-py ROM, and its registered ``ALE/<Game>-v5`` id maps back to it."""
    import ale_py
    import gymnasium as gym
    from ale_py import roms

    gym.register_envs(ale_py)
    rom_ids = set(roms.get_all_rom_ids())
    assert set(ATARI_DATA) <= rom_ids, sorted(set(ATARI_DATA) - rom_ids)
    v5 = [k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    found = {}
    for env_id in v5:
        key = atari_score_key(env_id)
        if key is not None:
            found.setdefault(key, []).append(env_id)
    assert set(found) == set(ATARI_DATA), sorted(set(ATARI_DATA) ^ set(found))
    assert all(len(ids) == 1 for ids in found.values()), {k: v for k, v in found.items() if len(v) > 1}
    assert found["up_n_down"] == ["ALE/UpNDown-v5"] and found["ms_pacman"] == ["ALE/MsPacman-v5"]
    for game in ATARI_DATA:  # and from the ROM id and old-style ids
        assert atari_score_key(game) == game
        assert atari_score_key(found[game][0][4:-3] + "NoFrameskip-v4") == game
    assert atari_score_key("ALE/Adventure-v5") is None  # an ALE game outside the 57


def atari_dict(**kwargs) -> dict:
    return {
        "id": "ALE/Pong-v5",
        "family": "atari",
        "kwargs": {**STANDARD_PROTOCOL, "maxpool": True, **kwargs},
    }


def test_score_note_gives_normalized_scores_only_for_whole_standard_episodes():
    spec = atari_dict()
    hns, note = score_note(spec, [14.6, -20.7], ["terminated", "terminated"])
    assert hns == pytest.approx(0.5) and "whole episodes" in note
    hns, note = score_note(spec, [14.6, 14.6], ["terminated", "truncated"])
    assert hns == pytest.approx(1.0) and "1 reached the 108k-frame cap" in note
    hns, note = score_note(spec, [14.6, 3.0], ["terminated", "cut"])
    assert hns is None and note.startswith("raw returns only") and "1 of 2 episodes were cut" in note
    hns, note = score_note(atari_dict(repeat_action_probability=0.0), [1.0], ["terminated"])
    assert hns is None and "repeat_action_probability=0.0 (standard 0.25)" in note
    hns, note = score_note({"id": "ALE/Pong-v5", "family": "atari", "kwargs": {}}, [1.0], ["terminated"])
    assert hns is None and "noop_max not recorded" in note
    hns, note = score_note({"id": CUE, "family": "gymnasium", "kwargs": {}}, [1.0], ["terminated"])
    assert hns is None and f"no human/random reference scores for {CUE}" in note
    assert atari_reference_scores(spec, 14.6) == {"human_normalized": pytest.approx(1.0)}
    assert atari_reference_scores(atari_dict(episodic_life=True), 14.6) == {}


def test_evaluate_flags_a_nonstandard_atari_cap_as_raw_only():
    """Real Pong with a 200-frame cap (50 agent steps): whole-by-the-env but not the standard protocol."""
    spec = env_spec("ALE/Pong-v5", max_num_frames_per_episode=200)
    net = small_net(0, n_actions=spec["n_actions"])
    out = evaluate(net, None, spec, episodes=2, num_envs=2, seed=0)
    assert out["ends"] == ["truncated", "truncated"] and out["time_limit"] == 2 and out["cut"] == 0
    assert out["raw_only"] and out["human_normalized"] is None
    assert "max_num_frames_per_episode=200 (standard 108000)" in out["score_note"]
    assert "raw returns only" in summary(out)
    cut = evaluate(net, None, env_spec("ALE/Pong-v5"), episodes=2, num_envs=2, seed=0, max_steps=5)
    assert cut["ends"] == ["cut", "cut"] and cut["complete"] == 0 and cut["raw_only"]
    assert "2 of 2 episodes were cut by max_steps" in summary(cut)


def fake_result(env_id: str, raw: float, ends: list[str], **kwargs) -> dict:
    """What evaluate returns, built through the same score_note (no env needed)."""
    spec = {"id": env_id, "family": "atari", "kwargs": {**STANDARD_PROTOCOL, **kwargs}}
    hns, note = score_note(spec, [raw] * len(ends), ends)
    return {
        "env": env_id,
        "episodes": len(ends),
        "mean": raw,
        "std": 0.0,
        "human_normalized": hns,
        "raw_only": hns is None,
        "score_note": note,
        "complete": len(ends) - ends.count("cut"),
        "time_limit": ends.count("truncated"),
        "cut": ends.count("cut"),
        "epsilon": 0.0,
    }


def test_aggregate_and_csv_keep_raw_only_games_apart(tmp_path):
    whole = ["terminated"] * 3
    results = [
        fake_result("ALE/Pong-v5", 14.6, whole),  # 1.0
        fake_result("ALE/Breakout-v5", 1.7, whole),  # 0.0
        fake_result("ALE/UpNDown-v5", 11693.2, whole),  # 1.0
        fake_result("ALE/MsPacman-v5", 6951.6, ["terminated", "cut"]),  # would be 1.0, but cut
        fake_result("ALE/Qbert-v5", 13455.0, whole, repeat_action_probability=0.0),
    ]
    agg = aggregate(results, reps=200)
    assert agg["games"] == ["ALE/Pong-v5", "ALE/Breakout-v5", "ALE/UpNDown-v5"]
    assert agg["iqm"] == pytest.approx(naive_iqm([1.0, 0.0, 1.0]))
    assert agg["low"] <= agg["iqm"] <= agg["high"] and agg["resampled"] == "runs and games"
    assert set(agg["raw_only"]) == {"ALE/MsPacman-v5", "ALE/Qbert-v5"}
    assert "cut by max_steps" in agg["raw_only"]["ALE/MsPacman-v5"]
    assert aggregate(results[3:])["iqm"] is None

    import csv

    with write_scores_csv(tmp_path / "scores.csv", results).open() as f:
        rows = list(csv.DictReader(f))
    assert [r["env"] for r in rows] == [r["env"] for r in results]
    assert rows[0]["raw_only"] == "False" and float(rows[0]["human_normalized"]) == pytest.approx(1.0)
    assert rows[3]["raw_only"] == "True" and rows[3]["human_normalized"] == "" and rows[3]["cut"] == "1"
    assert "repeat_action_probability=0.0" in rows[4]["score_note"]
    from rise_agent.cli import _aggregate_line

    line = _aggregate_line(agg)
    assert line.startswith(f"IQM human-normalized over 3 games: {agg['iqm']:.3f} [") and "MsPacman" in line


def test_btr_eval_epsilon():
    assert btr_eval_epsilon(0) == 0.01 and btr_eval_epsilon(31_500_000) == 0.01  # evaluation 126: 126M frames
    assert btr_eval_epsilon(31_750_000) == 0.0


def naive_iqm(values) -> float:
    xs = sorted(float(v) for v in np.ravel(values))
    k = len(xs) // 4
    middle = xs[k : len(xs) - k]
    return sum(middle) / len(middle)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 57, 100])
def test_iqm_matches_naive_loop(n):
    x = np.random.default_rng(n).standard_cauchy(n)  # heavy tails: the trimming matters
    assert iqm(x) == pytest.approx(naive_iqm(x), rel=1e-12)


def test_iqm_known_values():
    # scipy.stats.trim_mean(x, 0.25) on these: 4.5 (drop 2 per end of 8) and 2.0 (drop 1 per end of 5)
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    assert iqm([100.0, 2.0, 1.0, 3.0, -100.0]) == 2.0


@pytest.mark.parametrize("runs,games,task", [(3, 5, False), (1, 6, None), (4, 3, True)])
def test_iqm_bootstrap_matches_naive_loop(runs, games, task):
    scores = np.random.default_rng(1).normal(size=(runs, games)) * 3
    got = iqm_with_ci(scores, reps=300, confidence=0.9, seed=5, task_bootstrap=task)
    tasks = got["resampled"] == "runs and games"
    assert tasks == (task if task is not None else runs == 1)
    rng = np.random.default_rng(5)  # the same draws, in the order the function makes them
    game_draws = [rng.integers(0, games, games) for _ in range(300)] if tasks else None
    values = []
    for r in range(300):
        run_draws = rng.integers(0, runs, (runs, games))
        sample = []
        for j in range(games):
            g = game_draws[r][j] if tasks else j
            sample += [scores[run_draws[i, j], g] for i in range(runs)]
        values.append(naive_iqm(sample))
    low, high = np.percentile(values, [5, 95])
    assert got["iqm"] == pytest.approx(naive_iqm(scores))
    assert (got["low"], got["high"]) == (pytest.approx(low), pytest.approx(high))
    assert got["low"] <= got["high"] and got["runs"] == runs and got["games"] == games


def test_iqm_bootstrap_interval_and_refusals():
    # one run per game: resampling runs alone would give a zero-width interval
    wide = iqm_with_ci(np.arange(10.0), reps=500)
    assert wide["resampled"] == "runs and games" and wide["low"] < wide["iqm"] < wide["high"]
    flat = iqm_with_ci(np.arange(10.0), reps=500, task_bootstrap=False)
    assert flat["low"] == flat["high"] == flat["iqm"]
    with pytest.raises(ValueError, match="finite"):
        iqm_with_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        iqm_with_ci([])
    with pytest.raises(ValueError, match="no scores"):
        iqm([])


# ---------------------------------------------------------------------------------------------------
# Loading a trained agent and the collect plug-in


def write_agent(path, spec: dict, k: int = 4, weights_id: str = "none") -> torch.nn.Module:
    from dataclasses import replace

    net = small_net(k, n_actions=int(spec["n_actions"]))
    encoder = replace(make_encoder("downsample").spec, weights_id=weights_id) if k else None
    Checkpoint(net.state_dict(), net.config, encoder, spec).save(path)
    return net


def test_load_agent_rebuilds_network_and_encoder(cue_spec, tmp_path):
    path = tmp_path / "ck.pt"
    net = write_agent(path, cue_spec)
    loaded, encoder, meta = load_agent(path, "cpu")
    assert not loaded.training and meta["env"] == cue_spec and encoder.name == "downsample"
    assert loaded.config == net.config
    assert loaded.channels_last and not net.channels_last  # the CPU's default layout; same outputs below
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    ctx, mask = torch.randn(2, 4, 256), torch.ones(2, 4, dtype=torch.bool)
    taus = torch.rand(2, 8)
    net.eval()
    torch.testing.assert_close(loaded(frames, ctx, mask, taus=taus)[0], net(frames, ctx, mask, taus=taus)[0])

    write_agent(path, cue_spec, weights_id="sha256:abc")
    with pytest.raises(EncoderError, match="--encoder-weights"):
        load_agent(path, "cpu")


def test_eval_several_checkpoints_writes_scores_and_their_aggregate(cue_spec, tmp_path):
    """rise-agent eval A.pt B.pt: one scores row per checkpoint, then the IQM line (or why there is none)."""
    import csv

    from typer.testing import CliRunner

    from rise_agent.cli import app

    write_agent(tmp_path / "cue.pt", cue_spec)
    write_agent(tmp_path / "pong.pt", env_spec("ALE/Pong-v5"), k=0)
    cks, scores = [str(tmp_path / "cue.pt"), str(tmp_path / "pong.pt")], tmp_path / "scores.csv"
    args = ["eval", *cks, "--episodes", "1", "--max-steps", "5", "--scores-csv", str(scores), "--quiet"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0 and out.output == "", out.output
    with scores.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["checkpoint"] for r in rows] == cks and [r["env"] for r in rows] == [CUE, "ALE/Pong-v5"]
    assert rows[1]["raw_only"] == "True" and "cut by max_steps" in rows[1]["score_note"]
    out = CliRunner().invoke(app, args[:-1])  # progress bars and the lines
    assert out.exit_code == 0 and f"{cks[0]}: {CUE}: 1 episodes" in out.output, out.output
    assert f"\n{cks[1]}: ALE/Pong-v5: 1 episodes" in out.output
    assert f"\nno IQM: no game has a human-normalized score; raw only: {CUE}, ALE/Pong-v5\n" in out.output
    out = CliRunner().invoke(app, ["eval", cks[0], cks[0], "--episodes", "1", "--record", "x.gif"])
    assert out.exit_code == 2 and "--record" in out.output


def test_checkpoint_policy(cue_spec, tmp_path):
    path = tmp_path / "ck.pt"
    write_agent(path, cue_spec)
    policy = from_checkpoint(env=cue_spec, num_envs=2, seed=0, checkpoint=str(path))
    env = make_env(cue_spec, num_envs=2)
    step = env.reset(seed=0)
    for _ in range(8):
        actions = policy.act(step)
        assert actions.shape == (2,) and ((actions >= 0) & (actions < 3)).all()
        step = env.step(actions)
    env.close()
    info = policy.describe()
    assert info["name"] == "checkpoint" and info["path"] == str(path.resolve()) and len(info["sha256"]) == 64

    other = {**cue_spec, "id": "ALE/Pong-v5"}
    with pytest.raises(PolicyError, match="trained on"):
        from_checkpoint(env=other, num_envs=2, seed=0, checkpoint=str(path))
    with pytest.raises(PolicyError, match="--checkpoint"):
        from_checkpoint(env=cue_spec, num_envs=2, seed=0, checkpoint=None)
