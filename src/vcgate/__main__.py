"""``python -m vcgate``: the same as the ``vcgate`` command."""

from vcgate.cli import main

main()
