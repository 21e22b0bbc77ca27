"""Model serving helpers (the router run in front of deployed model containers)."""
