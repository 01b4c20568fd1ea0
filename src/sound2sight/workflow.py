"""The whole training chain on one config: prepare -> classifier -> shared space -> GAN -> report.

Each stage reads only the outputs of the stages above it from the run directory, and
each is skipped when its ``metrics.json`` already exists (``force`` retrains), so an
interrupted ``train all`` picks up where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sound2sight.config import Config, save_config
from sound2sight.io import atomic_write_json

__all__ = ["STAGES", "run_stage", "train_all", "describe_run"]

log = logging.getLogger(__name__)


def _prepare(cfg: Config, run_dir: Path) -> dict:
    from sound2sight.prepare import prepare_art, prepare_audio

    return {"audio": prepare_audio(cfg, run_dir), "art": prepare_art(cfg, run_dir)}


def _classifier(cfg: Config, run_dir: Path) -> dict:
    if cfg.classifier.pretrained:  # a shipped voice model instead of training one
        from sound2sight.voice.pretrained import install_pretrained

        return install_pretrained(cfg, run_dir)
    from sound2sight.voice.train import train_classifier

    return train_classifier(cfg, run_dir)


def _image(cfg: Config, run_dir: Path) -> dict:
    from sound2sight.train.features import extract_image_features

    return extract_image_features(cfg, run_dir)


def _align(cfg: Config, run_dir: Path) -> dict:
    from sound2sight.train.align import train_align

    return train_align(cfg, run_dir)


def _gan(cfg: Config, run_dir: Path) -> dict:
    from sound2sight.painting.train import train_gan

    summary = train_gan(cfg, run_dir)  # resumes from gan/last.pt when interrupted
    atomic_write_json(run_dir / "gan" / "train_summary.json", summary)  # the stage's done-marker
    return summary


def _gan_eval(cfg: Config, run_dir: Path) -> dict:
    from sound2sight.painting.evaluate import evaluate_gan

    return evaluate_gan(cfg, run_dir, n_per_class=cfg.gan.eval_per_class, n_fd=cfg.gan.eval_fd)


# name -> (function, file whose presence marks the stage as done)
STAGES: dict[str, tuple[Callable[[Config, Path], dict], str]] = {
    "prepare": (_prepare, "data/art_prepare.json"),  # written after the audio summary
    "classifier": (_classifier, "classifier/metrics.json"),
    "image": (_image, "image/metrics.json"),
    "align": (_align, "align/metrics.json"),
    "gan": (_gan, "gan/train_summary.json"),
    "gan-eval": (_gan_eval, "gan/metrics.json"),
}


def run_stage(name: str, cfg: Config, run_dir: str | Path, *, force: bool = False) -> dict | None:
    """Run one stage unless its output marker exists (or ``force``); return its summary."""
    run_dir = Path(run_dir)
    fn, marker = STAGES[name]
    if not force and (run_dir / marker).exists():
        log.info("stage %s: already done (%s exists), skipping", name, marker)
        return None
    t0 = time.perf_counter()
    log.info("stage %s: starting", name)
    out = fn(cfg, run_dir)
    log.info("stage %s: done in %.1f s", name, time.perf_counter() - t0)
    return out


def describe_run(cfg: Config, run_dir: str | Path) -> dict[str, str]:
    """What each part was trained on, in words people read (``provenance.json``)."""
    import csv

    run_dir = Path(run_dir)
    out: dict[str, str] = {}
    rows = []
    manifest = run_dir / "data" / "audio_manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    corpora = sorted({r["corpus"] for r in rows})
    c = cfg.classifier
    if c.pretrained:
        from sound2sight.voice.pretrained import load_card, provenance_line

        out["voice"] = provenance_line(load_card(c.pretrained))
    else:
        what = f"Whisper {c.encoder} + head" if c.arch == "whisper" else f"{c.arch} CNN"
        speakers = len({r["speaker"] for r in rows if r.get("split") == "train"})
        out["voice"] = (
            f"{what} trained on {', '.join(corpora) or '?'} "
            f"({sum(r.get('split') == 'train' for r in rows)} clips, {speakers} speakers)"
        )
    art = run_dir / "data" / "art_manifest.csv"
    n_art = 0
    if art.is_file():
        with open(art, newline="", encoding="utf-8") as fh:
            n_art = sum(1 for r in csv.DictReader(fh) if r.get("label"))
    out["art"] = cfg.data.art_description or f"{n_art} labelled paintings from {cfg.data.art_root}"
    out["painter"] = (
        f"conditional GAN in TAEF2 latent space, {cfg.gan.image_size} px, trained on that art"
    )
    return out


def train_all(cfg: Config, run_dir: str | Path, *, force: bool = False) -> dict:
    """Run every stage in order, then write ``report.html``; return stage wall times."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    times: dict[str, float] = {}
    for name in STAGES:
        t0 = time.perf_counter()
        run_stage(name, cfg, run_dir, force=force)
        times[name] = round(time.perf_counter() - t0, 2)
    atomic_write_json(run_dir / "provenance.json", describe_run(cfg, run_dir))
    from sound2sight.report import write_report

    t0 = time.perf_counter()
    write_report(run_dir)
    times["report"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(run_dir / "timings.json", times)
    return times
