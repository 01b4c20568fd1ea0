"""Crash and resume: SIGKILL mid-training, mid-checkpoint-write and mid-cache-build.

Training is killed in a real subprocess (``python -m sound2sight.voice.train``) and
restarted: it resumes from the last complete checkpoint and leaves no temporary file.
Writes are killed in forked children (milliseconds to start, torch already imported): the
destination is always the old complete file or the new complete file, never a partial one.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sound2sight.cache import build_mel_cache
from sound2sight.config import AudioConfig, load_config
from sound2sight.io import atomic_torch_save, safe_torch_load
from sound2sight.train.common import Checkpointer

FORK = mp.get_context("fork")


def _wait_for(predicate, *, timeout: float, what: str, proc=None) -> None:
    t0 = time.monotonic()
    while not predicate():
        alive = proc.poll() is None if hasattr(proc, "poll") else proc is None or proc.is_alive()
        if not alive:
            pytest.fail(f"the process ended before {what}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name.endswith(".tmp"))


# ---- training ----------------------------------------------------------------------------


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_from_the_last_checkpoint(tmp_path):
    from sound2sight.prepare import prepare_audio
    from sound2sight.synthetic import make_demo_corpus
    from sound2sight.voice.classifier import load_classifier

    make_demo_corpus(tmp_path / "data", n_speakers=6, clips_per_emotion=3, paintings_per_emotion=2)
    common = [
        "audio.duration=1.5",
        "audio.n_mels=32",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.workers=1",
    ]
    data = [f"data.audio_root={tmp_path / 'data' / 'audio'}", "data.n_folds=3"]
    run = tmp_path / "run"
    prepare_audio(load_config(overrides=[*common, *data, "data.val_fraction=0.34"]), run)
    sets = [
        *common,
        "classifier.arch=resnet",
        "classifier.width=8",
        "train.batch_size=16",
        "train.patience=100",
    ]

    def command(epochs: int) -> list[str]:
        args = [sys.executable, "-m", "sound2sight.voice.train", "--run", str(run)]
        for s in [*sets, f"train.epochs={epochs}"]:
            args += ["--set", s]
        return args

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = run / "classifier"
    last, best = out / "last.pt", out / "best.pt"

    def epoch_of_last() -> int:
        return int(safe_torch_load(last)["epoch"]) if last.is_file() else 0

    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command(60), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:  # after two saved epochs, and while no checkpoint is being written: mid-epoch
            _wait_for(
                lambda: epoch_of_last() >= 2 and not _temps(out),
                timeout=240,
                what="the second checkpoint",
                proc=proc,
            )
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = epoch_of_last()
    assert 2 <= killed_at < 60
    assert safe_torch_load(best)["epoch"] <= killed_at  # both survive the kill intact

    second = subprocess.run(
        command(killed_at + 1), capture_output=True, text=True, env=env, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from {last} at epoch {killed_at}" in (out / "train.log").read_text()
    trained = [line for line in second.stderr.splitlines() if " loss " in line]
    assert len(trained) == 1 and f"epoch {killed_at + 1}/{killed_at + 1}" in trained[0]
    state = safe_torch_load(last)
    assert state["epoch"] == killed_at + 1
    assert [h["epoch"] for h in state["history"]] == list(range(1, killed_at + 2))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == killed_at + 1
    assert _temps(out) == [], "temporary checkpoint files left behind"
    model, audio_cfg = load_classifier(best)
    assert audio_cfg.n_mels == 32 and not model.training


# ---- a checkpoint write killed half-way --------------------------------------------------

BIG = torch.arange(4 * 2**20, dtype=torch.float32)  # 16 MB: a write takes long enough to hit


def _save_forever(path: Path, first: int) -> None:
    torch.set_num_threads(1)
    for gen in range(first, first + 10_000):
        atomic_torch_save({"gen": gen, "check": torch.tensor([gen]), "x": BIG}, path)


def test_checkpoint_write_killed_midway_leaves_the_old_or_the_new_file(tmp_path):
    folder = tmp_path / "gan"
    folder.mkdir()
    path = folder / "last.pt"
    atomic_torch_save({"gen": -1, "check": torch.tensor([-1]), "x": BIG}, path)
    seen, mid_write = set(), 0
    for trial in range(4):
        child = FORK.Process(target=_save_forever, args=(path, 1000 * trial), daemon=True)
        inode = path.stat().st_ino
        child.start()  # let it replace the file once (a new inode), then start the next write
        _wait_for(
            lambda ino=inode: path.stat().st_ino != ino, timeout=60, what="a save", proc=child
        )
        if trial % 2:  # kill as soon as the next temporary file exists: mid-write
            _wait_for(lambda: _temps(folder), timeout=60, what="a checkpoint write", proc=child)
        else:  # or at a moment that does not look at the writes
            time.sleep(0.01 + 0.03 * trial)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        mid_write += bool(_temps(folder))
        state = safe_torch_load(path)  # old complete file or new complete file
        assert int(state["check"]) == state["gen"] and torch.equal(state["x"], BIG)
        seen.add(state["gen"])
    assert mid_write >= 1, "no kill landed inside a write"
    assert all(p.name.startswith(".last.pt.") for p in _temps(folder))
    Checkpointer(folder, load_config())  # a restarted stage clears what a killed save left
    assert _temps(folder) == [] and [p.name for p in folder.iterdir()] == ["last.pt"]
    assert len(seen) == 4  # the destination moved on between kills


# ---- the mel cache killed half-way -------------------------------------------------------


def _build_slowly(paths: list[str], cfg: AudioConfig, root: Path) -> None:
    """Build the cache with each rename delayed: a kill most likely lands mid-write."""
    torch.set_num_threads(1)
    real_replace = os.replace

    def slow_replace(src, dst):
        time.sleep(0.1)
        real_replace(src, dst)

    os.replace = slow_replace  # this forked child only
    build_mel_cache(paths, cfg, root, workers=1, chunk=4, progress=False)


def test_mel_cache_build_killed_midway_is_completed_by_a_rerun(tmp_path):
    sr, cfg = 16000, AudioConfig(duration=1.0, n_mels=32)
    t = np.arange(sr) / sr
    paths = []
    for i in range(24):
        paths.append(str(tmp_path / f"clip {i:02d}.wav"))
        sf.write(paths[-1], 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t), sr)
    root = tmp_path / "cache"

    def entries() -> list[Path]:
        return sorted(root.rglob("*.npy")) if root.exists() else []

    child = FORK.Process(target=_build_slowly, args=(paths, cfg, root), daemon=True)
    child.start()
    _wait_for(lambda: len(entries()) >= 4, timeout=120, what="four cache entries", proc=child)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    done = entries()
    assert 4 <= len(done) < 24, f"{len(done)} entries: the kill did not land mid-build"
    for entry in done:  # a kill never leaves a partial entry under the final name
        assert np.load(entry, allow_pickle=False).shape == (32, 101), entry
    assert all(p.name.startswith(".") for p in _temps(root)), "temporary files are hidden"
    orphan = root / done[0].parent.parent.name / "ab" / f".ab{'0' * 62}.npy.{child.pid}-1.tmp"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"partial")  # what a kill between open() and rename() leaves
    for tmp in _temps(root):  # a minute old: past the grace a live writer gets
        os.utime(tmp, (time.time() - 120, time.time() - 120))

    batch, cache = build_mel_cache(paths, cfg, root, workers=1, progress=False)
    assert _temps(root) == [], "the rerun sweeps the dead writer's temporary files"
    assert (batch.hits, batch.misses, batch.failures) == (len(done), 24 - len(done), [])
    mels = batch.load(cache)  # (24, 32, 101)
    assert len(entries()) == 24
    for entry in entries():
        assert np.load(entry, allow_pickle=False).shape == (32, 101), entry
    fresh, fresh_cache = build_mel_cache(paths, cfg, tmp_path / "fresh", workers=1, progress=False)
    np.testing.assert_array_equal(mels, fresh.load(fresh_cache))  # same numbers as no kill


def test_cache_sweep_spares_live_and_fresh_writers(tmp_path):
    from sound2sight.cache import FeatureCache

    cache = FeatureCache(tmp_path, namespace="ns")
    folder = tmp_path / "ns" / "ab"
    folder.mkdir(parents=True)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    old, now = time.time() - 120, time.time()
    files = {
        "live_old": (folder / f".ab1.npy.{os.getpid()}-1.tmp", old),  # live writer, 2 min: kept
        "dead_fresh": (folder / f".ab2.npy.{dead}-1.tmp", now),  # dead but just written: kept
        "dead_old": (folder / f".ab3.npy.{dead}-1.tmp", old),  # dead and old: removed
        "ancient": (folder / f".ab4.npy.{os.getpid()}-1.tmp", now - 7200),  # > 1 h: removed
        "entry": (folder / "ab5.npy", old),  # a finished entry is never touched
    }
    for path, mtime in files.values():
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    assert cache.sweep_temps() == 2
    assert {k for k, (p, _) in files.items() if p.exists()} == {"live_old", "dead_fresh", "entry"}
