"""q3cn-doctor: find what slows llama-server on this machine, fix it, launch it tuned."""

from q3cn_doctor.version import __version__

__all__ = ["__version__"]
