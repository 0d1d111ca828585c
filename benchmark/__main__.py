"""``python -m benchmark ...`` is the ``bench`` command."""

from .console import main

if __name__ == "__main__":
    main()
