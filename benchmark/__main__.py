"""``python -m benchmark ...`` is the ``bench`` command."""

from .console import main

main()
