"""Settings for the whole suite.

Hypothesis: no per-example deadline. These machines are shared and noisy; a slow example is not
a failure (speed is measured by ``rtml bench``, never asserted in tests).
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("rtml", deadline=None)
settings.load_profile("rtml")
