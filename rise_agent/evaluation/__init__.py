"""Evaluation of trained agents under BTR's protocol: episodes (evaluate), honest scores (scores), recordings (video)."""
