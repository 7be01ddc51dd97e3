"""``python -m fastrlm.cli``: the same as the ``fastrlm`` command."""

from . import main

main()
