"""Training: data, models, losses, the one loop, and the commands that train (train, sweep, prune)."""
