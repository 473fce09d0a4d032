"""The offline loop: gradient steps on a store's transitions up to ``--updates``, evaluating on schedule."""

from __future__ import annotations

from tqdm import tqdm

from rise_agent.training.session import Session

__all__ = ["run_offline"]


def run_offline(s: Session) -> None:
    """Learn from the store until ``s.config.updates`` gradient steps are done (continues a resumed run)."""
    c = s.config
    bar = tqdm(
        total=c.updates, initial=s.counters.updates, unit="update", disable=not c.progress, desc="offline"
    )
    while s.counters.updates < c.updates:
        before = s.counters.updates
        n = min(c.log_every, c.updates - before)
        s.learn(n)
        bar.update(n)
        s.maybe_checkpoint()
        if s.eval_due(before):
            s.evaluate()
    bar.close()
