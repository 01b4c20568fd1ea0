"""Corpus adapters -> manifest rows, and the speaker- / artwork-disjoint splits.

>>> from sound2sight.datasets import load_audio_corpus, load_art_corpus, Manifest
"""

from sound2sight.datasets.art import (
    IMAGE_EXTENSIONS,
    load_art_corpus,
    load_art_folders,
    load_artemis,
    load_labels_csv,
    load_unlabelled_images,
    load_wikiart_emotions,
    split_by_group,
)
from sound2sight.datasets.audio import (
    CORPORA,
    find_duplicates,
    load_audio_corpus,
    load_corpus_folder,
    load_label_folders,
)
from sound2sight.datasets.base import (
    ArtItem,
    AudioItem,
    LeakError,
    Manifest,
    assign_folds,
    check_speaker_disjoint,
    counts_table,
    read_folds_csv,
    read_manifest,
    split_by_speaker,
    write_manifest,
)

__all__ = [
    "ArtItem",
    "AudioItem",
    "CORPORA",
    "IMAGE_EXTENSIONS",
    "LeakError",
    "Manifest",
    "assign_folds",
    "check_speaker_disjoint",
    "counts_table",
    "find_duplicates",
    "load_art_corpus",
    "load_art_folders",
    "load_artemis",
    "load_audio_corpus",
    "load_corpus_folder",
    "load_label_folders",
    "load_labels_csv",
    "load_unlabelled_images",
    "load_wikiart_emotions",
    "read_folds_csv",
    "read_manifest",
    "split_by_group",
    "split_by_speaker",
    "write_manifest",
]
