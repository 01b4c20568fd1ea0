"""What a trained painter's discriminator tells apart: training vs held-out paintings, real vs
painted, and which part of its logit (realism or the condition's projection) does it.

    python benchmarks/painter_discriminator.py --run runs/pilot_base

Reads ``RUN/gan/last.pt`` (generator EMA and discriminator) and the run's paintings:
``--n`` labelled training paintings and as many held-out ones (their TAEF2 latents from the
cache, their own shared-space points).  For each set it prints the discriminator's mean logit
on the real latents and on latents painted for the same points (fresh noise), the share it
classifies right, and the two parts of the logit (``linear(h)``, the realism term, and
``<embed(c), h>``, the projection; also for real latents given another painting's point).
Also the latents' standard deviation and high-frequency energy (mean squared difference of
vertically adjacent latent cells), real vs painted.  A gap between training and held-out real
logits means a discriminator that memorises; a gap between real and painted in the realism term
means paintings it spots without looking at the condition.  Writes
``benchmarks/results/painter_discriminator_<run>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--n", type=int, default=600, help="paintings per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    from sound2sight.config import load_config
    from sound2sight.datasets.base import ArtItem, read_manifest
    from sound2sight.io import atomic_write_json, safe_torch_load
    from sound2sight.painting.data import image_conditions, load_align
    from sound2sight.painting.latents import painting_latents
    from sound2sight.painting.model import Discriminator, load_generator
    from sound2sight.train.common import cache_root

    ckpt = args.run / "gan" / "last.pt"
    state = safe_torch_load(ckpt)
    G, g = load_generator(ckpt, state=state)
    D = Discriminator(g)
    D.load_state_dict(state["D"])
    D.eval()
    cfg = load_config(args.run / "config.yaml")
    joint, _ = load_align(args.run)
    items = read_manifest(args.run / "data" / "art_manifest.csv", ArtItem)
    sets = {
        "train": [it for it in items if it.split == "train" and it.label][: args.n],
        "heldout": [it for it in items if it.split != "train" and it.label][: args.n],
    }
    gen = torch.Generator().manual_seed(args.seed)

    def parts(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit's realism term and its projection term (the rest of the logit)."""
        h = D.features(x)
        realism = D.linear(h).squeeze(1)
        return realism, D(None, c, h=h) - realism

    def hf(x: torch.Tensor) -> float:
        return float((x[..., 1:, :] - x[..., :-1, :]).pow(2).mean())

    out: dict = {"run": str(args.run), "step": state["step"], "sets": {}}
    print(f"{args.run} at step {state['step']}")
    print(
        f"{'set':8s}{'n':>5s}{'D real':>8s}{'D fake':>8s}{'real>0':>8s}{'fake<0':>8s}"
        f"{'realism r/f':>14s}{'proj r/f/wrong':>20s}{'std r/f':>14s}{'hf r/f':>14s}"
    )
    for name, its in sets.items():
        lat, keep = painting_latents(
            [it.path for it in its], size=g.image_size, cache_root=cache_root(cfg)
        )
        pts = image_conditions(cfg, args.run, joint, [its[i].path for i in keep])
        real = lat.float()
        with torch.no_grad():
            z = torch.randn(len(pts), g.z_dim, generator=gen)
            fake = G(z, pts, generator=gen)
            u_r, p_r = parts(real, pts)
            u_f, p_f = parts(fake, pts)
            _, p_w = parts(real, pts[torch.randperm(len(pts), generator=gen)])
        d_r, d_f = u_r + p_r, u_f + p_f
        row = {
            "n": len(pts),
            "d_real": float(d_r.mean()),
            "d_fake": float(d_f.mean()),
            "real_right": float((d_r > 0).float().mean()),
            "fake_right": float((d_f < 0).float().mean()),
            "realism_real": float(u_r.mean()),
            "realism_fake": float(u_f.mean()),
            "projection_real": float(p_r.mean()),
            "projection_fake": float(p_f.mean()),
            "projection_real_wrong_point": float(p_w.mean()),
            "latent_std_real": float(real.std()),
            "latent_std_fake": float(fake.std()),
            "latent_hf_real": hf(real),
            "latent_hf_fake": hf(fake),
        }
        out["sets"][name] = row
        print(
            f"{name:8s}{row['n']:5d}{row['d_real']:8.2f}{row['d_fake']:8.2f}"
            f"{row['real_right']:8.2f}{row['fake_right']:8.2f}"
            f"{row['realism_real']:7.2f}/{row['realism_fake']:.2f}"
            f"{row['projection_real']:9.2f}/{row['projection_fake']:.2f}/"
            f"{row['projection_real_wrong_point']:.2f}"
            f"{row['latent_std_real']:8.3f}/{row['latent_std_fake']:.3f}"
            f"{row['latent_hf_real']:8.3f}/{row['latent_hf_fake']:.3f}"
        )
    out["command"] = "python benchmarks/painter_discriminator.py " + " ".join(argv or sys.argv[1:])
    path = (
        args.out or REPO / "benchmarks" / "results" / f"painter_discriminator_{args.run.name}.json"
    )
    print(f"wrote {atomic_write_json(path, out)}")
    return out


if __name__ == "__main__":
    main()
