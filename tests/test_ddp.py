"""Two CPU processes under torchrun (gloo) train one epoch of the classifier together."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from sound2sight.config import AudioConfig
from sound2sight.datasets.base import AudioItem, write_manifest

# ~15-20 s (three Python processes import torch), so not marked slow

OVERRIDES = [
    "audio.duration=1.0",
    "audio.n_mels=32",
    "classifier.width=4",
    "classifier.depth=2",
    "classifier.embed_dim=8",
    "train.epochs=1",
    "train.batch_size=8",
    "data.workers=1",
    "train.time_mask=5",
]


def _tone_corpus(root, *, n_per_class: int = 8) -> list[AudioItem]:
    """Class k is a tone at 300 / 1200 / 3000 Hz in noise, 1 s at 16 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    items = []
    for i in range(3 * n_per_class):
        k, spk = i % 3, i % 6
        wave = 0.3 * np.sin(2 * np.pi * (300, 1200, 3000)[k] * t) + rng.normal(0, 0.02, t.size)
        path = root / f"s{spk}_{i}.wav"
        sf.write(path, wave.astype(np.float32), 16000)
        split = "test" if spk == 0 else ("val" if spk == 1 else "train")
        items.append(
            AudioItem(
                str(path),
                ("angry", "happy", "sad")[k],
                "x",
                f"t:{spk}",
                "tone",
                fold=spk % 5,
                split=split,
            )
        )
    return items


def test_torchrun_two_processes(tmp_path):
    from sound2sight.cache import build_mel_cache
    from sound2sight.config import load_config
    from sound2sight.train.common import cache_root

    items = _tone_corpus(tmp_path)
    run = tmp_path / "run"
    write_manifest(items, run / "data" / "audio_manifest.csv")
    cfg = load_config(overrides=OVERRIDES)
    assert cfg.audio == AudioConfig(duration=1.0, n_mels=32)
    build_mel_cache(
        [it.path for it in items], cfg.audio, cache_root(cfg), workers=1, progress=False
    )  # warm, so the two ranks only read
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sound2sight.voice.train",
        "--run-dir",
        str(run),
    ]
    for o in OVERRIDES:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run / "classifier"
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_run"] == 1
    assert metrics["test"]["n"] == 4
    assert "world=2" in (out / "train.log").read_text()
