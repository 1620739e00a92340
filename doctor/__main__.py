"""``python -m q3cn_doctor``: the same as the console script."""

from .cli import main

main()
