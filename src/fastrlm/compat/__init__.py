"""Drop-in surfaces of other RLM packages, mapped onto fastrlm.

``from fastrlm.compat import rlms`` gives the official package's (``pip install rlms``, import
``rlm``) public surface: change ``from rlm import RLM`` to ``from fastrlm.compat.rlms import
RLM`` and the code runs on fastrlm's engine, sandbox and budgets (docs/compat-rlms.md).
"""

from . import rlms

__all__ = ["rlms"]
