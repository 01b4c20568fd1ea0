"""Shared fixtures: tiny generated data, and the real corpora when ../shared/data exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SOUND2SIGHT_DATA", REPO.parent / "shared" / "data"))
# 23 real CREMA-D clips shipped in the package (DbCL): real speech for offline tests
EXAMPLE_VOICES = sorted(
    (REPO / "src" / "sound2sight" / "examples" / "voices" / "CREMA-D" / "AudioMP3").glob("*.mp3")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora; tests using it are marked ``realdata`` and skip without it."""
    if not (SHARED_DATA / "audio").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own feature cache, so no test sees another's files."""
    monkeypatch.setenv("SOUND2SIGHT_CACHE", str(tmp_path_factory.mktemp("cache")))


TINY_OVERRIDES = [
    "audio.duration=1.5",
    "audio.n_mels=32",
    "data.n_folds=3",
    "data.val_fraction=0.34",
    "classifier.width=8",
    "train.epochs=2",
    "train.batch_size=16",
    "align.epochs=2",
    "align.steps_per_epoch=3",
    "align.batch_per_class=4",
    "align.map_points=12",
    "gan.steps=3",
    "gan.batch_size=8",
    "gan.g_ch=8",
    "gan.d_ch=8",
    "gan.sample_every=2",
    "gan.ckpt_every=2",
    "gan.fd_samples=0",
    "gan.eval_per_class=4",
    "gan.eval_fd=12",
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Every stage trained for a few steps on a tiny synthetic corpus: a real run directory."""
    from sound2sight.config import load_config
    from sound2sight.synthetic import make_demo_corpus
    from sound2sight.workflow import train_all

    root = tmp_path_factory.mktemp("tiny")
    make_demo_corpus(root / "data", n_speakers=6, clips_per_emotion=3, paintings_per_emotion=8)
    cfg = load_config(
        overrides=[
            f"data.audio_root={root / 'data' / 'audio'}",
            f"data.art_root={root / 'data' / 'art'}",
            f"data.cache_dir={root / 'cache'}",
            *TINY_OVERRIDES,
        ]
    )
    run = root / "run"
    train_all(cfg, run)
    return run


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny models: on a shared, oversubscribed CPU OpenMP spinning
    makes two threads many times slower than one.  Restores the previous setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
