"""masktrack: object masks and per-object 3D point tracks from robot-manipulation recordings.

Data flows one way: video -> sessions -> masks -> composition -> queries -> tracks -> recordings.
Nothing here imports a model library; backends are loaded lazily by name.
"""

__version__ = "0.1.0"

from masktrack.errors import MasktrackError

__all__ = ["MasktrackError", "__version__"]
