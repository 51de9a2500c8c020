"""Meta-learning core: episodes, inner-loop update, losses and outer algorithms (MAML family)."""
