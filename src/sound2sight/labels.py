"""Emotion vocabulary and the one explicit label-normalisation map.

Every corpus label (a word such as ``fearful`` or a corpus code such as ``ANG``,
``05`` or ``sa``) is normalised through :class:`LabelMap`.  A label the map does not
know is dropped and counted, never silently relabelled.

>>> LabelMap().normalise("Fearful"), LabelMap().normalise("neutral")
('sad', None)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

__all__ = ["EMOTIONS", "DEFAULT_LABEL_MAP", "LabelMap"]

EMOTIONS: tuple[str, ...] = ("angry", "happy", "sad")

# Keys are matched case-insensitively after stripping.  Values must be in EMOTIONS.
# Anything absent (neutral, calm, surprise, "something else", ...) is dropped.
DEFAULT_LABEL_MAP: dict[str, str] = {
    # plain words (TESS, folder layouts, ArtEmis, WikiArt Emotions)
    "angry": "angry",
    "anger": "angry",
    "disgust": "angry",  # ArtEmis/WikiArt convention: anger + disgust -> angry
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "amusement": "happy",
    "awe": "happy",
    "contentment": "happy",
    "excitement": "happy",
    "optimism": "happy",
    "love": "happy",
    "sad": "sad",
    "sadness": "sad",
    "pessimism": "sad",
    "fear": "sad",
    "fearful": "sad",
    # corpus codes
    "ang": "angry",  # CREMA-D
    "dis": "angry",  # CREMA-D
    "hap": "happy",  # CREMA-D
    "fea": "sad",  # CREMA-D
    "05": "angry",  # RAVDESS emotion code
    "07": "angry",  # RAVDESS disgust
    "03": "happy",  # RAVDESS
    "04": "sad",  # RAVDESS
    "06": "sad",  # RAVDESS fearful
    "a": "angry",  # SAVEE
    "d": "angry",  # SAVEE disgust
    "h": "happy",  # SAVEE
    "sa": "sad",  # SAVEE
    "f": "sad",  # SAVEE fear
}


class LabelMap:
    """Normalise raw corpus labels to :data:`EMOTIONS`.

    Parameters
    ----------
    mapping : Mapping[str, str] | None
        Replaces :data:`DEFAULT_LABEL_MAP` entirely when given.
    overrides : Mapping[str, str | None] | None
        Applied on top of the base mapping; a value of ``None`` or ``""`` removes a key
        (that label is then dropped).

    Examples
    --------
    >>> m = LabelMap(overrides={"surprised": "happy", "fear": None})
    >>> m("SURPRISED"), m("fear"), m("ANG")
    ('happy', None, 'angry')
    """

    def __init__(
        self,
        mapping: Mapping[str, str] | None = None,
        *,
        overrides: Mapping[str, str | None] | None = None,
    ) -> None:
        base = dict(DEFAULT_LABEL_MAP if mapping is None else mapping)
        for key, value in (overrides or {}).items():
            if value in (None, ""):
                base.pop(key, None)
            else:
                base[key] = value
        table = {}
        for key, value in base.items():
            if value not in EMOTIONS:
                raise ValueError(
                    f"label map entry {key!r} -> {value!r}: target must be one of {EMOTIONS}"
                )
            table[str(key).strip().lower()] = value
        self.table = table

    def normalise(self, raw: object) -> str | None:
        """Return the emotion for ``raw`` or ``None`` when the label is outside the map."""
        return self.table.get(str(raw).strip().lower())

    __call__ = normalise

    def count_dropped(self, raws: Iterable[object]) -> Counter:
        """Count the raw labels (as given) that :meth:`normalise` drops."""
        return Counter(str(r) for r in raws if self.normalise(r) is None)
