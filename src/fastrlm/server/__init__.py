"""``fastrlm serve``: an OpenAI-compatible HTTP server whose model is a Recursive Language Model.

Any OpenAI client can use it: ``POST /v1/chat/completions`` with model ``rlm``; the context goes
in the body's ``context`` field (``extra_body={"context": ...}`` with the openai SDK) or, when it
is absent, the whole conversation is the context. Built on aiohttp's low-level server, held to
the server's own limits and error shapes (see :mod:`fastrlm.server._http`).
"""

from ._access import formatter as access_log_formatter
from ._app import RLMServer
from ._http import HTTPError, HTTPLimits

__all__ = ["HTTPError", "HTTPLimits", "RLMServer", "access_log_formatter"]
