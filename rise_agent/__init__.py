"""RISE agent: BTR learner with a frozen-encoder context stream."""
