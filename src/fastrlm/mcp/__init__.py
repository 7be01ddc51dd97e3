"""``fastrlm mcp``: an MCP server (the official ``mcp`` SDK, extra ``fastrlm[mcp]``) offering
``rlm_ask``, ``rlm_load``, ``rlm_runs`` and ``rlm_trace`` over files under ``--root`` dirs.

``_policy`` (roots, budgets a call may ask for) and ``_tools`` (the tools as plain async
methods) hold the logic; ``_app`` wires them onto the SDK. Importing this package imports the
SDK (``MissingExtraError`` without it); ``import fastrlm`` never does.
"""

from ._app import BearerAuth, bind, build_server, serve_http, serve_stdio
from ._policy import Roots, ToolRefusal, lowered_budget
from ._tools import ContextHandles, RLMTools, progress_message

__all__ = [
    "BearerAuth",
    "ContextHandles",
    "RLMTools",
    "Roots",
    "ToolRefusal",
    "bind",
    "build_server",
    "lowered_budget",
    "progress_message",
    "serve_http",
    "serve_stdio",
]
