"""stemtok engine: audio I/O, features, models, runtime, data and evaluation.

The engine never imports Qt; the desktop editor and the DAW bridge in ``app`` use it through its
public API only.
"""

from engine.constants import MODEL_RATE, STEMS
from engine.errors import StemtokError

__version__ = "0.1.0"

__all__ = ["MODEL_RATE", "STEMS", "StemtokError", "__version__"]
