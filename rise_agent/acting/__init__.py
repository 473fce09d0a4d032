"""Acting: the actor (network + frozen encoder over a vector env), the acting thread, checkpoint policies."""
