"""Policy-gradient agents and the adversarial loop for recgym. Filled in by the agents issue."""
