"""Is the painter's FD limited by what it is asked to paint, or by how it paints?

    python benchmarks/painter_conditions.py --run runs/pilot_base

One trained painter (``RUN/gan/last.pt``, EMA weights), 300 paintings with the training label
mix each time, scored by the Lite2 FD against the training paintings (as
``benchmarks/painter_pilot.py`` scores), under different conditions:

- ``voice neighbours, k=K``: what the pipeline does (``gan.condition=neighbours``): a held-out
  voice's point, then one of the ``K`` training paintings nearest it (K = 8 is the default;
  larger K spreads the conditions over more of the gallery);
- ``training paintings' own points``: a random training painting of the emotion, its own
  point (the conditions the painter trained on: the widest coverage there is);
- ``truncation T``: the default conditions, noise entries beyond ``T`` redrawn.

If the FD with the paintings' own points is no better than with voice neighbours, the
conditions are not what holds FD up.  Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a run with gan/last.pt")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--ks", default="8,32,128")
    ap.add_argument("--truncations", default="2.0,1.0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from sound2sight.config import load_config
    from sound2sight.datasets.base import ArtItem, read_manifest
    from sound2sight.io import atomic_write_json
    from sound2sight.labels import EMOTIONS
    from sound2sight.models.image import load_image_encoder
    from sound2sight.painting.data import audio_bank, image_conditions, load_align, load_art_images
    from sound2sight.painting.metrics import (
        cached_real_features,
        effnet_features,
        frechet_distance,
    )
    from sound2sight.painting.model import generate, load_generator, neighbour_conditions

    cfg = load_config()
    G, g = load_generator(args.run / "gan" / "last.pt")
    joint, aud = load_align(args.run)
    bank = audio_bank(joint, aud, splits=("test",))
    items = [
        it for it in read_manifest(args.run / "data" / "art_manifest.csv", ArtItem) if it.label
    ]
    imgs, keep = load_art_images([it.path for it in items], size=g.image_size, workers=2)
    items = [items[i] for i in keep]
    y = np.array([EMOTIONS.index(it.label) for it in items])
    tr = np.array([it.split == "train" for it in items])
    paths = [it.path for it, t in zip(items, tr, strict=True) if t]
    gallery = torch.as_tensor(image_conditions(cfg, args.run, joint, paths)).float()
    y_tr = y[tr]
    lite2, _ = load_image_encoder(variant="lite2")
    real = cached_real_features(cfg, lite2, [it.path for it in items], imgs)
    ref = real[tr]
    freq = torch.tensor(np.bincount(y_tr, minlength=len(EMOTIONS)) / tr.sum())

    def score(name: str, conditions, truncation: float = 0.0) -> dict:
        gen = torch.Generator().manual_seed(0)
        labels = torch.multinomial(freq, args.n, True, generator=gen)
        c = conditions(labels, gen)
        fd = frechet_distance(
            effnet_features(lite2, generate(G, c, generator=gen, truncation=truncation)), ref
        )
        row = {"fd_lite2": fd, "distinct_conditions": len(torch.unique(c, dim=0))}
        print(f"{name:40s} FD {fd:6.1f}   distinct conditions {row['distinct_conditions']}")
        return row

    def neighbours(k: int):
        return lambda lab, gen: neighbour_conditions(
            bank.sample(lab, generator=gen), gallery, k=k, generator=gen
        )

    def own(lab, gen):
        pools = {k: torch.from_numpy(np.flatnonzero(y_tr == k)) for k in range(len(EMOTIONS))}
        pick = [pools[int(k)][torch.randint(len(pools[int(k)]), (1,), generator=gen)] for k in lab]
        return gallery[torch.cat(pick)]

    rows = {}
    for k in (int(v) for v in args.ks.split(",") if v):
        rows[f"voice neighbours, k={k}"] = score(f"voice neighbours, k={k}", neighbours(k))
    rows["training paintings' own points"] = score("training paintings' own points", own)
    for t in (float(v) for v in args.truncations.split(",") if v):
        rows[f"voice neighbours, k={g.k_condition}, truncation {t:g}"] = score(
            f"voice neighbours, k={g.k_condition}, truncation {t:g}", neighbours(g.k_condition), t
        )
    result = {"run": str(args.run), "n": args.n, "rows": rows}
    out = args.out or REPO / "benchmarks" / "results" / f"painter_conditions_{args.run.name}.json"
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
