"""Running checks: the registry, the context a check sees, the runner and the finding model."""
