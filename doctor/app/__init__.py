"""The command line: the only layer that knows click, the session and the user's config."""
