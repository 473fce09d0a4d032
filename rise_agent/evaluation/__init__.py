"""Evaluation of trained agents under BTR's protocol: returns, human-normalized scores, recorded episodes."""
