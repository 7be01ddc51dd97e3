"""``python -m fastrlm``: the same as the ``fastrlm`` command."""

from .cli import main

if __name__ == "__main__":
    main()
