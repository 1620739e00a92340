"""Starting llama-server: the launch plan, its flags for this build and the exec."""
