"""The ``fastrlm`` command line. Importing it is cheap: commands load their modules on use."""

from ._app import cli, main
from ._exit import ExitCode

__all__ = ["ExitCode", "cli", "main"]
