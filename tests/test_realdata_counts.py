"""Counts on the real corpora (../shared/data); names are parsed and files hashed, never decoded."""

from __future__ import annotations

from collections import Counter

import pytest

from sound2sight.datasets import (
    assign_folds,
    find_duplicates,
    load_audio_corpus,
    load_labels_csv,
    read_folds_csv,
)

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def audio_manifest(shared_data):
    return load_audio_corpus(shared_data / "audio")


def test_audio_manifest_counts(audio_manifest):
    items = audio_manifest.items
    assert len(items) == 6016
    assert Counter(it.label for it in items) == {"angry": 1504, "happy": 1504, "sad": 3008}
    assert Counter(it.corpus for it in items) == {
        "RAVDESS": 768,
        "TESS": 1600,
        "SAVEE": 240,
        "CREMA-D": 3408,
    }
    assert len({it.speaker for it in items}) == 91
    assert not audio_manifest.skipped and not audio_manifest.dropped


def test_every_speaker_has_a_fold(audio_manifest, shared_data):
    folds = read_folds_csv(shared_data / "audio" / "folds.csv")
    assert {it.speaker for it in audio_manifest.items} <= set(folds)
    items = assign_folds(list(audio_manifest.items), folds=folds)
    assert sorted(Counter(it.fold for it in items)) == [0, 1, 2, 3, 4]


def test_duplicates_in_the_pool(audio_manifest):
    """Byte-identical files found by hashing all 6,016 clips.

    The data README says CREMA-D has two conflicting pairs (``1006_TIE_HAP_XX``,
    ``1017_IWW_ANG_XX``) in the public release; in this 60-actor, four-emotion subset their
    partners are absent (actor 1017 is not here, and no clip matches 1006_TIE_HAP_XX, even
    after decoding), so there are no conflicting groups.  One same-label pair does exist.
    """
    groups = find_duplicates(audio_manifest.items)
    crema_conflicts = [
        g for g in groups if g["conflict"] and any("CREMA-D" in s for s in g["speakers"])
    ]
    assert len(crema_conflicts) == 0
    assert [(g["speakers"], g["labels"], g["conflict"]) for g in groups] == [
        (["RAVDESS:07", "RAVDESS:07"], ["happy", "happy"], False)
    ]


def test_art_labels_csv_counts(shared_data):
    m = load_labels_csv(shared_data / "art" / "labels.csv")
    assert len(m) == 3179 and not m.skipped and not m.dropped
    assert Counter(it.label for it in m.items) == {"angry": 162, "happy": 2544, "sad": 473}
    assert len({it.group for it in m.items}) == 3179
