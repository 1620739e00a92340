"""``python -m q3cn_doctor``: the same as the console script."""

from q3cn_doctor.app.cli import main

main()
