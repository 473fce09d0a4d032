"""Shared fixtures: one small real Pong store per session, copied where a test writes to it."""

from __future__ import annotations

import os

# One intra-op thread for torch in the tests and the CLIs they start (set before torch is imported): the
# test tensors are tiny, so a second thread only adds OpenMP hand-offs, and on a 2-core machine with anything
# else running its spin-waits made single tests 40x slower (63 s against 1.5 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil  # noqa: E402
from pathlib import Path

import pytest

from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode


@pytest.fixture(scope="session")
def pong_store(tmp_path_factory) -> str:
    """A real ALE/Pong-v5 store of 400+ steps from 4 envs (read-only: copy it before writing)."""
    path = str(tmp_path_factory.mktemp("stores") / "pong.zarr")
    collect(CollectConfig("ALE/Pong-v5", path, steps=400, num_envs=4, seed=0, progress=False))
    return path


def copy_store(src: str, tmp_path) -> str:
    """A writable copy of a read-only fixture store, under the test's own tmp_path."""
    dst = str(tmp_path / Path(src).name)
    shutil.copytree(src, dst)
    return dst


def encoded_copy(src: str, folder) -> str:
    """A copy of a fixture store in ``folder`` with downsample embeddings (on the CPU, one thread)."""
    path = copy_store(src, folder)
    encode(EncodeConfig(path, encoder="downsample", device="cpu", progress=False, threads=1))
    return path


@pytest.fixture()
def pong_copy(pong_store, tmp_path) -> str:
    return copy_store(pong_store, tmp_path)


@pytest.fixture(scope="session")
def cue_store(tmp_path_factory) -> str:
    """A small rise/CueMemory-v0 store (3 episodes, RGB frames; read-only: copy it before writing)."""
    path = str(tmp_path_factory.mktemp("stores") / "cue.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=3, num_envs=1, progress=False))
    return path


@pytest.fixture()
def cue_copy(cue_store, tmp_path) -> str:
    return copy_store(cue_store, tmp_path)


@pytest.fixture(scope="session")
def cue_replay_store(tmp_path_factory) -> str:
    """A CueMemory store with downsample embeddings for the replay tests: 33-row episodes from 2 envs,
    4 terminated + 2 truncated by --steps (read-only)."""
    path = str(tmp_path_factory.mktemp("stores") / "cue-replay.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, steps=150, num_envs=2, progress=False))
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    return path


@pytest.fixture()
def s3(monkeypatch):
    """moto's S3 server on 127.0.0.1 (free port), credentials in the environment; stopped afterwards.

    Bounded: the server must answer within 10 s, and an alarm fails the test after 300 s.
    """
    import logging
    import signal
    import socket
    import time
    import urllib.request

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    def timeout(signum, frame):
        raise TimeoutError("S3 test ran past 300 s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(300)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        client = boto3.client("s3", endpoint_url=endpoint)
        deadline = time.monotonic() + 10
        while True:
            try:
                # moto's in-process buckets outlive a server: start each test from an empty S3
                reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
                urllib.request.urlopen(reset, timeout=10).close()
                client.create_bucket(Bucket="rise-data")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield client
    finally:
        server.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# short names the check/errors tests use (test_share.py has its own ``cue``: an encoded store)
@pytest.fixture()
def cue(cue_store) -> str:
    return cue_store


@pytest.fixture()
def copy(cue_copy) -> str:
    return cue_copy


def requires(module: str, extra: str = "envs") -> pytest.MarkDecorator:
    """Skip unless ``module`` is installed; the reason is the line that installs it."""
    import importlib.util

    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"{module} is not installed: make setup-extras (or pip install -c constraints.txt -e '.[{extra}]')",
    )


# a tiny RISE network for the end-to-end family tests (seconds on a CPU)
TINY_NET = ["--impala-channels", "4,8,8", "--hidden", "32", "--lstm-hidden", "32", "-k", "4", "--n-cos", "8"]


def cli_ok(app, args: list[str]) -> str:
    """Run a CLI command in process; assert it exited 0 and return its output."""
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"{args[0]} failed: {res.output[-2000:]}"
    return res.output


def encode_train_eval(store: str, run: str, num_envs: str = "2") -> str:
    """The round trip every env family must survive after collect: encode, a tiny online fine-tune, then
    ``rise-agent eval`` (which rebuilds the env from the spec the store recorded); returns eval's output."""
    from rise_agent.cli import app as agent_app
    from rise_data.cli import app as data_app

    cli_ok(data_app, ["encode", store, "--encoder", "downsample", "--quiet"])
    args = [
        "train",
        "--store",
        store,
        "--online",
        "--run-dir",
        run,
        "--env-steps",
        "48",
        "--num-envs",
        num_envs,
    ]
    args += ["--replay-ratio", "8", "--learning-starts", "16", "--batch-size", "8", "--device", "cpu"]
    args += ["--no-progress", "--eval-episodes", num_envs, "--eval-max-steps", "20", *TINY_NET]
    cli_ok(agent_app, args)
    return cli_ok(agent_app, ["eval", f"{run}/checkpoint.pt", "--episodes", num_envs, "--max-steps", "20"])
