"""Built-in checks, one module per concern. Each registers with ``@check``."""
