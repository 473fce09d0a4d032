"""Acting concurrently with learning: an actor thread a bounded number of vector steps ahead.

The actor thread steps the envs with its own copy of the network (noise, the frozen encoder's forward
and the env step all happen there) and hands each vector step to the learner through a queue. The
learner files the step into replay, takes exactly its share of gradient steps (replay ratio), then
publishes its weights to the actor's copy. The two sides meet once per vector step, deterministically:

- the actor acts at vector step ``s`` with the weights the learner had after filing steps ``< s - lag``;
- the learner publishes the weights it has after step ``t`` only once the actor finished step ``t + lag``
  (the last one that uses the previous weights), so the copy never races an actor forward pass.

``lag = 0`` orders the two sides as :mod:`rise_agent.training.reference`'s serial loop (which is what
``--policy-lag 0`` runs); ``lag = 1`` overlaps the actor's step ``t+1``
with the learner's work on step ``t`` at the price of a policy one vector step older (at BTR's ratio, one
gradient step). BTR's own loop overlaps only the emulator (``step_async``) with one gradient step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rise_agent.acting.actor import Actor, epsilon_draws
from rise_agent.acting.config import ActingConfig
from rise_agent.acting.groups import GroupedVectorEnv
from rise_agent.network import RiseNetwork, make_network, spectral_norm_modules
from rise_data.collect.rollout import Rollout
from rise_data.envs import Step

__all__ = ["ActingThread", "Failed", "VectorStep", "WeightGate"]


class WeightGate:
    """The handshake of the two sides: how far the actor has acted and which weights it may use."""

    def __init__(self, lag: int):
        self.lag = int(lag)
        self.acted = 0  # vector steps the actor has finished (the reset step not counted)
        self.version = 0  # learner steps whose weights the actor's copy holds
        self.cond = threading.Condition()
        self.stopped = False
        self.max_lag_seen = 0
        # CUDA: recorded after the last weight copy, on the learner's stream
        self.event: torch.cuda.Event | None = None

    def actor_may_act(self, s: int) -> bool:
        """Block until the actor may act at step ``s``; False once stopped."""
        with self.cond:
            self.cond.wait_for(lambda: self.stopped or self.version >= s - self.lag)
            if not self.stopped:
                self.max_lag_seen = max(self.max_lag_seen, s - self.version)
            event = self.event
        if event is not None:  # the actor's stream waits for the copy's kernels, not the whole device
            torch.cuda.current_stream().wait_event(event)
        return not self.stopped

    def actor_done(self) -> None:
        with self.cond:
            self.acted += 1
            self.cond.notify_all()

    def publish(self, t: int, copy_weights: Callable[[], None]) -> None:
        """After the learner finished step ``t``: wait for the actor to finish step ``t + lag``, copy, release."""
        with self.cond:
            self.cond.wait_for(lambda: self.stopped or self.acted >= t + self.lag + 1)
            if self.stopped:
                return
            copy_weights()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                event = torch.cuda.Event()
                event.record()  # on the learner thread's current stream
                self.event = event
            self.version = t + 1
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


def actor_copy(network: RiseNetwork) -> RiseNetwork:
    """A separate copy of the network for the actor thread: same weights and device, no gradients.

    Built fresh from the network's config, so nothing the learner attached (its metric hooks, and
    through them the whole Learner: target and Adam state) comes along as a deepcopy would bring it.
    The copy stays in training mode (parameter noise on, as BTR acts) with its spectral-norm
    parametrisations in eval mode: it uses the u/v vectors the learner's online network iterates
    (copied with every publish) instead of power-iterating on every act.
    """
    device = next(network.parameters()).device
    twin = make_network(network.config).to(device).train()
    twin.set_layout(network.channels_last, 0, None)  # the learner's CNN layout (NHWC on the CPU by default)
    twin.requires_grad_(False)
    copy_weights(network, twin)
    for m in spectral_norm_modules(twin):
        m.eval()
    return twin


@torch.no_grad()
def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """dst <- src, parameters and buffers, in place (one fused copy per list)."""
    torch._foreach_copy_(list(dst.parameters()), list(src.parameters()))
    bufs_dst, bufs_src = list(dst.buffers()), list(src.buffers())
    if bufs_dst:
        torch._foreach_copy_(bufs_dst, bufs_src)


class VectorStep(NamedTuple):
    """One vector step from the actor thread: the actions sent (None for the reset step), the step the
    envs returned and its embeddings; ``ready`` (CUDA, own actor stream): recorded once they are done."""

    actions: np.ndarray | None
    step: Step
    emb: Tensor | None
    ready: torch.cuda.Event | None = None


class Failed(NamedTuple):
    """The actor thread's exception, re-raised in the learner thread by :meth:`ActingThread.get`."""

    error: BaseException


def _part(step: Step, sl: slice) -> Step:
    frame = None if step.frame is None else step.frame[sl]
    return Step(
        step.obs[sl], frame, step.reward[sl], step.terminated[sl], step.truncated[sl], step.is_first[sl]
    )


def _cat_emb(embs: list):
    return None if embs[0] is None else torch.cat(embs)


class ActingThread(threading.Thread):
    """Steps ``env`` (a :class:`~rise_data.collect.rollout.Rollout`) with ``actor``; puts a
    :class:`VectorStep` per vector step on ``out``, the reset step first (``actions`` None).

    ``epsilon(s)`` gives the ε of vector step ``s`` (counted from the start of this thread); the thread
    stops when ``gate.stop()`` is called or after ``steps`` vector steps. With ``config.env_groups > 1``
    the Rollout's env is a :class:`~rise_agent.acting.groups.GroupedVectorEnv` stepped group by group. An
    exception in the thread is put on the queue (:class:`Failed`) and re-raised by ``get``.
    """

    def __init__(
        self,
        env: Rollout,
        actor: Actor,
        gate: WeightGate,
        epsilon: Callable[[int], float],
        rng: np.random.Generator,
        steps: int,
        seed: int,
        config: ActingConfig | None = None,
    ):
        super().__init__(daemon=True, name="rise-actor")
        self.env, self.actor, self.gate = env, actor, gate
        self.epsilon, self.rng, self.steps, self.seed = epsilon, rng, steps, seed
        self.out: queue.Queue = queue.Queue(maxsize=gate.lag + 2)
        self.config = config or ActingConfig()
        # CUDA with config.actor_stream: the actor's own high-priority stream
        self.stream: torch.cuda.Stream | None = None
        self._draws: tuple[np.ndarray, np.ndarray] | None = None  # env groups: this step's ε draws

    def run(self) -> None:
        device = getattr(self.actor, "device", torch.device("cpu"))
        if self.config.actor_stream and device.type == "cuda":
            self.stream = torch.cuda.Stream(device, priority=-1)  # lower number: higher priority
            with torch.cuda.stream(self.stream):
                return self._run()
        return self._run()

    def _run(self) -> None:
        try:
            if self.config.env_groups > 1:
                genv = self.env.env
                # acting_env builds one for env_groups > 1 (Rollout's annotation names the plain vector env)
                assert isinstance(genv, GroupedVectorEnv)
                return self._run_grouped(genv)
            step = self.env.reset(seed=self.seed)
            self._put(VectorStep(None, step, self.actor.observe(step)))
            for s in range(self.steps):
                if not self.gate.actor_may_act(s):
                    return
                actions = self.actor.act(self.epsilon(s), self.rng)
                self.env.send(actions)  # the Rollout remembers the actions for file()
                step = self.env.recv()
                emb = self.actor.observe(step)
                self.gate.actor_done()
                self._put(VectorStep(actions, step, emb))
        except BaseException as e:  # surfaced in the learner thread by get()
            self._put(Failed(e))

    def _run_grouped(self, genv: GroupedVectorEnv) -> None:
        """Double-buffered: each group's next actions are picked while the other groups step.

        Group g's actions for step s+1 are chosen as soon as its part of step s is in, before the later
        groups' parts are, so acting at s+1 starts before step s is filed: it needs ``lag >= 1``. The gate
        counts step s+1 as acted once every group has its actions for it (the weights are then free).
        """
        if self.gate.lag < 1:
            raise RuntimeError("env_groups > 1 needs policy_lag >= 1 (a group acts before the step is filed)")
        actors = [self.actor.for_envs(sl.stop - sl.start) for sl in genv.slices]
        step = self.env.reset(seed=self.seed)
        embs = [a.observe(_part(step, sl)) for a, sl in zip(actors, genv.slices, strict=True)]
        self._put(VectorStep(None, step, _cat_emb(embs)))
        if self.steps == 0 or not self.gate.actor_may_act(0):
            return
        actions = self._act_groups(genv, actors, 0, None)
        self.gate.actor_done()
        for s in range(self.steps):
            ahead = s + 1 < self.steps and self.gate.actor_may_act(s + 1)
            if self.gate.stopped:
                return
            embs, nxt = [], []
            for g, actor in enumerate(actors):
                embs.append(actor.observe(genv.recv_part(g)))
                if ahead:
                    nxt.append(self._act_groups(genv, [actor], s + 1, g))
            step = self.env.recv()
            if ahead:
                self.env.send(np.concatenate(nxt))  # every group already started: bookkeeping only
                self.gate.actor_done()
            self._put(VectorStep(actions, step, _cat_emb(embs)))
            if not ahead:
                return
            actions = np.concatenate(nxt)

    def _act_groups(
        self, genv: GroupedVectorEnv, actors: list[Actor], s: int, group: int | None
    ) -> np.ndarray:
        """Pick and send the actions of step ``s`` for ``actors`` (all groups, or the one ``group``).

        Step s's ε draws are made once for all envs (at its first group), so every env gets the draws it
        gets ungrouped."""
        if group in (None, 0):
            self._draws = epsilon_draws(self.epsilon(s), self.rng, genv.num_envs, genv.n_actions)
        assert self._draws is not None  # made at group 0 of the step
        explore, uniform = self._draws
        out = []
        for g, actor in enumerate(actors) if group is None else [(group, actors[0])]:
            sl = genv.slices[g]
            a = actor.pick(explore[sl], uniform[sl])
            genv.send_part(g, a)
            out.append(a)
        actions = np.concatenate(out)
        if group is None:
            self.env.send(actions)
        return actions

    def _put(self, item: VectorStep | Failed) -> None:
        if self.stream is not None and isinstance(item, VectorStep) and item.emb is not None:
            ready = torch.cuda.Event()
            ready.record(self.stream)  # the embeddings are ready once the actor's stream gets here
            item = item._replace(ready=ready)
        while not self.gate.stopped:
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> VectorStep:
        """The next vector step; re-raises the actor thread's exception."""
        while True:
            try:
                item = self.out.get(timeout=0.5)
                break
            except queue.Empty:
                if not self.is_alive() and self.out.empty():
                    raise RuntimeError("the actor thread stopped without a step") from None
        if isinstance(item, Failed):
            raise item.error
        if item.ready is not None:  # made on the actor's own stream: this thread's stream waits for it
            torch.cuda.current_stream().wait_event(item.ready)
            item.emb.record_stream(torch.cuda.current_stream())
        return item

    def stop(self) -> None:
        self.gate.stop()
        self.join(timeout=30)
