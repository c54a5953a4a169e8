"""Training: the sharded train step, losses, metric writers and the loop (resume, preemption,
periodic evaluation through injected evaluators)."""
