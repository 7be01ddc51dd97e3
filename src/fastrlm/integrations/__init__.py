"""Doors from other ecosystems into fastrlm (each an extra, imported only when asked for)."""
