"""A quick painter pilot: train a few thousand steps, then one Lite2 FD and the diversity ratio.

For choosing between recipes before a full ``benchmarks/painter.py`` run (which scores
everything).  Conditions are held-out voices turned into the generator's conditions as the
pipeline does; 300 paintings with the training label mix go to the FD against the training
paintings, beside 300 held-out real paintings measured the same way.

Usage::

    python benchmarks/painter_pilot.py --source-run runs/real0 --run runs/pilot_ttur --steps 4000
    python benchmarks/painter_pilot.py --source-run runs/real0 --run runs/pilot_same_lr \\
        --steps 4000 --set gan.lr_g=0.0002 --set gan.lr_d=0.0002

``--eval-seed S`` draws other noise, conditions and held-out paintings for the score; on a run
already trained to ``--steps`` nothing is trained, so it measures how far the judge alone
moves a figure.  Prints one line and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from sound2sight.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def quick_fd(cfg, run: Path, *, n: int = 300, seed: int = 0) -> dict:
    from sound2sight.datasets.base import ArtItem, read_manifest
    from sound2sight.labels import EMOTIONS
    from sound2sight.models.image import load_image_encoder
    from sound2sight.painting.data import audio_bank, image_conditions, load_align, load_art_images
    from sound2sight.painting.metrics import (
        cached_real_features,
        diversity,
        effnet_features,
        frechet_distance,
    )
    from sound2sight.painting.model import generate, inference_conditions, load_generator

    G, g = load_generator(run / "gan" / "last.pt")
    joint, aud = load_align(run)
    bank = audio_bank(joint, aud, splits=("test",))
    items = [it for it in read_manifest(run / "data" / "art_manifest.csv", ArtItem) if it.label]
    imgs, keep = load_art_images([it.path for it in items], size=g.image_size, workers=2)
    items = [items[i] for i in keep]
    y = np.array([EMOTIONS.index(it.label) for it in items])
    tr = np.array([it.split == "train" for it in items])
    gallery = image_conditions(
        cfg, run, joint, [it.path for it, t in zip(items, tr, strict=True) if t]
    )
    lite2, _ = load_image_encoder(variant="lite2")
    real = cached_real_features(cfg, lite2, [it.path for it in items], imgs)
    ref, held = real[tr], real[~tr]
    gen = torch.Generator().manual_seed(seed)
    freq = torch.tensor(np.bincount(y[tr], minlength=3) / tr.sum())
    lab = torch.multinomial(freq, n, True, generator=gen)
    c = inference_conditions(bank.sample(lab, generator=gen), gallery, g, generator=gen)
    f = effnet_features(lite2, generate(G, c, generator=gen))
    per = torch.arange(3).repeat_interleave(n // 5)
    c2 = inference_conditions(bank.sample(per, generator=gen), gallery, g, generator=gen)
    div = diversity(
        effnet_features(lite2, generate(G, c2, generator=gen)), per.numpy(), real, y, names=EMOTIONS
    )
    pick = np.random.default_rng(seed).permutation(len(held))[:n]
    return {
        "fd_lite2": frechet_distance(f, ref),
        "fd_lite2_real_heldout": frechet_distance(held[pick], ref),
        "diversity": div["mean_ratio"],
        "diversity_per_class": {k: v["ratio"] for k, v in div["per_class"].items()},
        "n": n,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source-run", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--eval-seed",
        type=int,
        default=0,
        help="seed of the scored paintings' noise, conditions and held-out sample",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from sound2sight.config import load_config
    from sound2sight.painting.train import train_gan

    for rel in ("config.yaml", "data", "align", "image"):
        src, dst = args.source_run / rel, args.run / rel
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    overrides = [f"gan.steps={args.steps}", "gan.sample_every=1000", "gan.ckpt_every=1000"]
    cfg = load_config(overrides=[*overrides, *args.set])
    train = train_gan(cfg, args.run)
    res = {
        "overrides": args.set,
        "steps": train["steps"],
        "train": train,
        "eval_seed": args.eval_seed,
        **quick_fd(cfg, args.run, seed=args.eval_seed),
    }
    print(
        f"{args.run.name}: {res['steps']} steps, {train['sec_per_step']:.3f} s/step | Lite2 FD "
        f"{res['fd_lite2']:.1f} (real held-out {res['fd_lite2_real_heldout']:.1f}) | diversity "
        f"{res['diversity']:.2f} "
        + str({k: round(v, 2) for k, v in res["diversity_per_class"].items()})
    )
    out = args.out or REPO / "benchmarks" / "results" / f"painter_pilot_{args.run.name}.json"
    atomic_write_json(out, res)
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
