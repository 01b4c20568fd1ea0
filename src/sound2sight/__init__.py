"""sound2sight: hear the emotion in a voice, paint it, and show the artworks nearest to it."""

from sound2sight.config import Config, load_config
from sound2sight.labels import EMOTIONS, LabelMap

__all__ = ["EMOTIONS", "Config", "LabelMap", "load_config"]
__version__ = "0.1.0"
