"""Actor windows vs naive logs, ε schedule, checkpoints, evaluation, scores, loading and the collect policy."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from rise_agent.actor import Actor, epsilon_schedule
from rise_agent.atari_scores import ATARI_DATA, human_normalized
from rise_agent.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from rise_agent.evaluate import evaluate, load_agent, write_video
from rise_agent.network import NetworkConfig, make_network
from rise_agent.policy import from_checkpoint
from rise_data.encoders import EncoderError, make_encoder
from rise_data.envs import Step, env_spec, make_env
from rise_data.policies import PolicyError

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


def naive_window(log: list, length: int, shape: tuple, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Last ``length`` items of the current episode, left-padded with zeros, current item last."""
    items = log[-length:]
    pad = length - len(items)
    window = torch.zeros((length, *shape), dtype=dtype)
    mask = torch.zeros(length, dtype=torch.bool)
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
        want_f, _ = naive_window(obs_logs[i], 4, (84, 84), torch.uint8)
        assert torch.equal(frames[i], want_f)


# ---------------------------------------------------------------------------------------------------
# Actor


@pytest.mark.parametrize("k", [4, 8])
def test_actor_context_matches_naive_reconstruction(cue_spec, k):
    env = make_env(cue_spec, num_envs=3)
    encoder = make_encoder("downsample")
    actor = Actor(small_net(k), encoder, 3, frame_stack=4, context_len=k)
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
    actor = Actor(small_net(k), encoder, e, frame_stack=4, context_len=k)
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


def test_epsilon_schedule():
    assert epsilon_schedule(0) == 1.0
    assert epsilon_schedule(1_000_000) == pytest.approx(0.505)
    assert epsilon_schedule(2_000_000) == pytest.approx(0.01)
    assert epsilon_schedule(10_000_000) == pytest.approx(0.01)
    assert epsilon_schedule(50, start=0.5, end=0.1, decay_steps=100) == pytest.approx(0.3)
    assert epsilon_schedule(25_000_000, disable_after=25_000_000) == 0.0
    assert epsilon_schedule(24_999_999, disable_after=25_000_000) == pytest.approx(0.01)
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
    assert human_normalized("rise/CueMemory-v0", 1.0) is None


# ---------------------------------------------------------------------------------------------------
# Loading a trained agent and the collect plug-in


def write_agent(path, spec: dict, k: int = 4, weights_id: str = "none") -> torch.nn.Module:
    net = small_net(k)
    record = (
        {"name": "downsample", "weights": None, "weights_id": weights_id, "source": "frame"} if k else None
    )
    save_checkpoint(
        path,
        {
            "network": net.state_dict(),
            "network_config": json.dumps(asdict(net.config)),
            "encoder": json.dumps(record),
            "env": json.dumps(spec),
        },
    )
    return net


def test_load_agent_rebuilds_network_and_encoder(cue_spec, tmp_path):
    path = tmp_path / "ck.pt"
    net = write_agent(path, cue_spec)
    loaded, encoder, meta = load_agent(path, "cpu")
    assert not loaded.training and meta["env"] == cue_spec and encoder.name == "downsample"
    assert loaded.config == net.config
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    ctx, mask = torch.randn(2, 4, 256), torch.ones(2, 4, dtype=torch.bool)
    taus = torch.rand(2, 8)
    net.eval()
    torch.testing.assert_close(loaded(frames, ctx, mask, taus=taus)[0], net(frames, ctx, mask, taus=taus)[0])

    write_agent(path, cue_spec, weights_id="sha256:abc")
    with pytest.raises(EncoderError, match="--encoder-weights"):
        load_agent(path, "cpu")


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
