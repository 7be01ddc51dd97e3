"""The engine's name for :class:`fastrlm.Limits`, which lives in the foundations
(``fastrlm._foundation.limits``) so that providers can read it without importing the engine."""

from __future__ import annotations

from .._foundation.limits import Limits as Limits
