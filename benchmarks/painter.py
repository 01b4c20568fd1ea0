"""Painter benchmark (issue 20): train the latent painter on the shared paintings, score it, time it.

Usage::

    python benchmarks/painter.py --source-run runs/real0 --run runs/painter128 --threads 2
    python benchmarks/painter.py --source-run runs/real0 --run runs/painter256 \\
        --set gan.image_size=256 --device cuda --out benchmarks/results/painter_gpu256.json

``--source-run`` names a run directory holding the stages the painter reads
(``data/art_manifest.csv`` with the unlabelled paintings, ``align/``, ``image/features.npz``)
and the voice model (``classifier/``, for the latency measurement); they are copied into
``--run`` (the source is never written).

1. The default recipe (``gan.*`` defaults plus ``--set`` overrides) trains, or resumes from
   ``gan/last.pt``; its wall time is the training time (checkpoint plotting excluded).
2. :func:`sound2sight.painting.evaluate.evaluate_gan` scores the EMA generator: Lite2 FD /
   KID against the training paintings beside held-out real paintings and their TAEF2
   reconstructions (the decoder's own ceiling), diversity per emotion, held-out probe
   consistency and its real ceiling, emotion vs noise.  ``--also-voice`` scores the same
   checkpoint conditioned on the voice's point itself instead of its nearest paintings.
3. ``benchmarks/latency.py`` times the whole answer on the trained run (unless ``--no-latency``).
4. Writes ``--out`` (JSON, with a top-level ``summary``) and ``--docs-grid`` (generated
   paintings only; one row per emotion).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from sound2sight.config import load_config
from sound2sight.io import atomic_write_json

log = logging.getLogger("sound2sight.benchmarks.painter")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "painter.json"
INPUTS = ("config.yaml", "data", "align", "image", "classifier")
GOALS = {
    "train_minutes": ("<=", 45),
    "fd_ratio_to_real": ("<=", 1.3),
    "kid_lite2": ("<=", 0.03),
    "diversity": (">=", 0.8),
    "min_class_diversity": (">=", 0.7),
    "consistency_minus_ceiling": (">=", 0.0),
    "emotion_reach": (">=", 0.5),
    "latency_p50_ms": ("<=", 400),
}


def stage_inputs(source: Path | None, run: Path) -> None:
    """Copy what the painter and the pipeline read from ``source`` into ``run``."""
    for rel in INPUTS:
        src, dst = (source / rel if source else None), run / rel
        if src is not None and src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    for rel in ("data/art_manifest.csv", "align/best.pt", "align/audio_embeddings.npz"):
        if not (run / rel).is_file():
            raise SystemExit(f"{run / rel}: missing; pass --source-run with the align stage done")


def summarise(train: dict, m: dict, latency: dict | None) -> dict:
    """The issue's summary fields from the training result, metrics and latency report."""
    ind = m["independent"]
    per = ind["diversity"]["per_class"]
    held = ind["consistency_heldout"]["probe"]
    return {
        "image_size": m["image_size"],
        "steps": train["steps"],
        "train_minutes": round(train["wall_seconds"] / 60, 2),
        "fd_lite2": round(ind["fd"]["generated"], 2),
        "fd_lite2_real_heldout": round(ind["fd"]["real_heldout"], 2),
        "fd_lite2_reconstruction": round(ind["fd"]["reconstruction_heldout"], 2),
        "kid_lite2": round(ind["kid"]["generated"]["mean"], 4),
        "diversity": round(ind["diversity"]["mean_ratio"], 3),
        "min_class_diversity": round(min(v["ratio"] for v in per.values()), 3),
        "consistency_heldout": round(held["generated"]["balanced"], 3),
        "consistency_ceiling": round(held["real_ceiling"]["balanced"], 3),
        "emotion_reach": round(m["emotion_vs_noise"]["ratio"], 3),
        "latency_p50_ms": None if latency is None else round(latency["wall_ms"]["p50"], 1),
    }


def goals(s: dict) -> dict:
    values = {
        "train_minutes": s["train_minutes"],
        "fd_ratio_to_real": s["fd_lite2"] / s["fd_lite2_real_heldout"],
        "kid_lite2": s["kid_lite2"],
        "diversity": s["diversity"],
        "min_class_diversity": s["min_class_diversity"],
        "consistency_minus_ceiling": s["consistency_heldout"] - s["consistency_ceiling"],
        "emotion_reach": s["emotion_reach"],
        "latency_p50_ms": s["latency_p50_ms"],
    }
    out = {}
    for k, (op, goal) in GOALS.items():
        v = values[k]
        met = None if v is None else (v <= goal if op == "<=" else v >= goal)
        out[k] = {"value": None if v is None else round(v, 4), "goal": f"{op} {goal}", "met": met}
    return out


def compose_grids(run: Path, out: Path, *, cols: int = 8) -> Path:
    """One PNG with a labelled row of ``cols`` generated paintings per emotion."""
    from PIL import Image, ImageDraw

    from sound2sight.labels import EMOTIONS

    rows = []
    for e in EMOTIONS:
        grid = Image.open(run / "gan" / f"grid_{e}.png").convert("RGB")
        cell = (grid.width - 2) // 8  # save_grid: 8 per row, 2 px borders
        rows.append((e, grid.crop((0, 0, 2 + cols * cell, cell + 2))))
    label_w = 56
    canvas = Image.new("RGB", (label_w + rows[0][1].width, sum(r.height for _, r in rows)), "white")
    draw, y = ImageDraw.Draw(canvas), 0
    for e, r in rows:
        canvas.paste(r, (label_w, y))
        draw.text((4, y + r.height // 2 - 6), e, fill="black")
        y += r.height
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--source-run", type=Path, default=None)
    p.add_argument("--set", action="append", default=[], help="config override, k=v")
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--n-fd", type=int, default=300)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default=None, help="feature cache folder (default: the usual one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--also-voice", action="store_true", help="also score gan.condition=voice")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--docs-grid", type=Path, help="write the generated grid here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from sound2sight.painting.evaluate import evaluate_gan
    from sound2sight.painting.train import train_gan

    stage_inputs(args.source_run, args.run)
    overrides = [f"seed={args.seed}", f"device={args.device}", *args.set]
    if args.cache:
        overrides.append(f"data.cache_dir={args.cache}")
    cfg = load_config(overrides=overrides)
    t0 = time.perf_counter()
    train = train_gan(cfg, args.run)
    t1 = time.perf_counter()
    metrics = evaluate_gan(
        cfg, args.run, n_per_class=args.n_per_class, n_fd=args.n_fd, checkpoint="last"
    )
    log.info(
        "trained in %.0f s (this call), evaluated in %.0f s", t1 - t0, time.perf_counter() - t1
    )
    result = {"overrides": overrides, "threads": args.threads, "train": train, "metrics": metrics}
    if args.also_voice:
        state = torch.load(args.run / "gan" / "last.pt", weights_only=True)
        state["config"]["gan"]["condition"] = "voice"  # same weights, the voice's own point
        alt = args.run.parent / (args.run.name + "_voice")
        (alt / "gan").mkdir(parents=True, exist_ok=True)
        stage_inputs(args.run, alt)
        torch.save(state, alt / "gan" / "last.pt")
        result["metrics_condition_voice"] = evaluate_gan(
            cfg, alt, n_per_class=args.n_per_class, n_fd=args.n_fd, checkpoint="last"
        )
    if args.docs_grid:
        print(f"wrote {compose_grids(args.run, args.docs_grid)}")
    latency = None
    if not args.no_latency:
        import importlib.util

        spec = importlib.util.spec_from_file_location("latency", REPO / "benchmarks" / "latency.py")
        lat = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lat)
        lat_out = args.out.with_name(args.out.stem + "_latency.json")
        lat.main(["--run", str(args.run), "--calls", "50", "--out", str(lat_out)])
        latency = json.loads(lat_out.read_text())
        result["latency"] = {"file": lat_out.name, "wall_ms": latency["wall_ms"]}
    summary = summarise(train, metrics, latency)
    result = {"summary": summary, "goals": goals(summary), **result}
    print(f"\n{'summary':<28} value")
    for k, v in summary.items():
        print(f"{k:<28} {v}")
    print(f"\n{'goal':<28} {'value':>10}  {'goal':>8}  met")
    for k, g in result["goals"].items():
        v = "-" if g["value"] is None else f"{g['value']:.3f}"
        print(f"{k:<28} {v:>10}  {g['goal']:>8}  {g['met']}")
    if "metrics_condition_voice" in result:
        mv = result["metrics_condition_voice"]
        print(
            f"\ncondition=voice: Lite2 FD {mv['independent']['fd']['generated']:.1f}, emotion reach "
            f"{mv['emotion_vs_noise']['ratio']:.2f}, held-out consistency "
            f"{mv['independent']['consistency_heldout']['probe']['generated']['balanced']:.3f}"
        )
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
