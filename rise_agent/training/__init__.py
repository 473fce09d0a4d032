"""Training sessions: build the parts, run offline or online, keep the run directory and its checkpoint."""
