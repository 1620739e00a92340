"""Benchmarks of the live machine: memory bandwidth now, llama.cpp's speed later."""
