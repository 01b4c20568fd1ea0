"""GAN benchmark: train (or load) the conditional GAN on the WikiArt paintings and score it.

Usage::

    python benchmarks/gan.py --source-run RUN --run /tmp/gan_bench/run --steps 600
    python benchmarks/gan.py --run RUN --steps 600 --no-ablation   # RUN already has data/ + align/
    python benchmarks/gan.py --goals A.json B.json --baseline BASE.json   # the goals table only

``--source-run`` names a run directory that already holds the stages the GAN reads
(``data/art_manifest.csv``, ``align/best.pt``, ``align/audio_embeddings.npz``,
``image/features.npz``); they are copied into ``--run`` (the source is never written).
Without it, ``--run`` must hold them already.

1. The main arm (``gan.*`` as configured plus ``--set`` overrides) trains for ``--steps``
   generator steps, or resumes/loads when ``gan/last.pt`` exists; the EMA generator's
   Lite0 FD is taken at every eighth of the run (``--fd-samples``), so the table can say
   whether FD worsened over the last half.
2. Unless ``--no-ablation``, the same model trains without EMA and without DiffAugment.
   With ``--raw`` the main arm's raw generator is scored too.
3. Each arm is scored by :func:`sound2sight.painting.evaluate.evaluate_gan`: Lite0 FD
   (the discriminator's own feature space, so not independent for the projected D), and
   the independent judge — EfficientNet-Lite2 FD, KID, diversity, and emotion consistency
   judged by held-out paintings beside the real-image ceiling — plus the emotion-vs-noise
   pixel change.  Writes ``--out`` (JSON).
4. ``--goals`` reads results files and prints the issue's goals, with the independent FD as
   a ratio to ``--baseline``'s; writes ``benchmarks/results/gan_goals.json``.

On a shared 2-core CPU, one torch thread per process is much faster than two
(``--threads``, default 1): the OpenMP workers otherwise spin against other jobs.
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

log = logging.getLogger("sound2sight.benchmarks.gan")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gan.json"
INPUTS = (
    "data/art_manifest.csv",
    "align/best.pt",
    "align/audio_embeddings.npz",
    "image/features.npz",
)


def stage_inputs(source: Path | None, run: Path) -> None:
    """Copy the upstream stages the GAN reads from ``source`` into ``run`` (if given)."""
    for rel in INPUTS:
        dst = run / rel
        if source is not None and not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dst)
        if not dst.is_file() and rel != "image/features.npz":
            raise SystemExit(f"{dst}: missing; pass --source-run with the align stage done")


def run_arm(name: str, run: Path, overrides: list[str], args) -> dict:
    """Train (or resume) one arm and evaluate its last checkpoint."""
    from sound2sight.painting.evaluate import evaluate_gan
    from sound2sight.painting.train import train_gan

    cfg = load_config(
        overrides=[
            f"seed={args.seed}",
            f"device={args.device}",
            f"data.cache_dir={args.cache}",
            *overrides,
        ]
    )
    t0 = time.perf_counter()
    train = train_gan(cfg, run)
    t1 = time.perf_counter()
    if args.time_only:  # the step cost alone (e.g. on an idle machine), no scoring
        log.info("%s: %d steps, %.3f s/step", name, train["steps"], train["sec_per_step"])
        return {"overrides": overrides, "train": train}
    metrics = evaluate_gan(
        cfg, run, n_per_class=args.n_per_class, n_fd=args.n_fd, checkpoint="last"
    )
    log.info("%s: trained in %.0f s, evaluated in %.0f s", name, t1 - t0, time.perf_counter() - t1)
    out = {
        "overrides": overrides,
        "train": train,
        "metrics": metrics,
        "eval_seconds": round(time.perf_counter() - t1, 1),
    }
    if args.raw and cfg.gan.ema > 0:  # the same checkpoint's raw generator: what EMA adds
        out["metrics_raw"] = evaluate_gan(
            cfg, run, n_per_class=args.n_per_class, n_fd=args.n_fd, checkpoint="last", weights="G"
        )
    return out


def stability(fd_history: list) -> dict | None:
    """Does FD worsen over the last half of the run?  Best and last FD of the second half."""
    if len(fd_history) < 2:
        return None
    last_step = fd_history[-1][0]
    second = [f for s, f in fd_history if s >= last_step / 2]
    return {
        "fd_at_half": second[0],
        "fd_last": second[-1],
        "fd_min_second_half": min(second),
        "worsened": bool(second[-1] > second[0]),
    }


def _row(name: str, arm: dict, key: str = "metrics") -> str:
    m, t = arm[key], arm["train"]
    ind = m.get("independent", {})
    head = f"{name:<26} {t['steps']:>5} {t['wall_seconds']:>6.0f}s | "
    lite0 = (
        f"L0 FD {m['fd_effnet']['generated']:6.1f} (real {m['fd_effnet']['real_heldout']:5.1f}) | "
    )
    if "fd" not in ind:
        return head + lite0 + "(no Lite2)"
    held = ind["consistency_heldout"]
    per = " ".join(f"{e[:3]} {v:.2f}" for e, v in held["probe"]["generated"]["per_class"].items())
    return (
        head
        + lite0
        + (
            f"L2 FD {ind['fd']['generated']:6.1f} (real {ind['fd']['real_heldout']:5.1f}) "
            f"KID {ind['kid']['generated']['mean']:.3f} div {ind['diversity']['mean_ratio']:.2f} | "
            f"held-out probe {held['probe']['generated']['balanced']:.3f} ({per}; "
            f"real {held['probe']['real_ceiling']['balanced']:.3f}) "
            f"k5 {held['knn']['generated']['k5']['balanced']:.3f} "
            f"(real {held['knn']['real_ceiling']['k5']['balanced']:.3f}) | "
            f"emo/noise {m['emotion_vs_noise']['ratio']:.2f}"
        )
    )


def compose_grids(run: Path, out: Path, *, prefix: str = "grid_", cols: int = 8) -> Path:
    """One PNG with a labelled row of ``cols`` paintings per emotion from ``run/gan/PREFIX*.png``."""
    from PIL import Image, ImageDraw

    from sound2sight.labels import EMOTIONS

    rows = []
    for e in EMOTIONS:
        grid = Image.open(run / "gan" / f"{prefix}{e}.png").convert("RGB")
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


def _main_arm(path: Path) -> dict:
    """The first (main) arm of a results file; arms are keyed by their label."""
    return next(iter(json.loads(path.read_text())["arms"].values()))


def goals(paths: list[Path], baseline: Path, out: Path) -> dict:
    """The issue's goals for each results file's main arm, as ratios to the baseline's."""
    base = _main_arm(baseline)["metrics"]["independent"]
    rows = {}
    for path in paths:
        arm = _main_arm(path)
        m, ind = arm["metrics"], arm["metrics"]["independent"]
        held = ind["consistency_heldout"]["probe"]
        gen, ceil = held["generated"]["balanced"], held["real_ceiling"]["balanced"]
        st = arm.get("stability") or stability(arm["train"].get("fd_history", []))
        checks = {
            "train_minutes<=45": (
                arm["train"]["wall_seconds"] / 60,
                arm["train"]["wall_seconds"] <= 2700,
            ),
            "fd_lite0<=100": (m["fd_effnet"]["generated"], m["fd_effnet"]["generated"] <= 100),
            "fd_lite2<=0.7x_baseline": (
                ind["fd"]["generated"] / base["fd"]["generated"],
                ind["fd"]["generated"] <= 0.7 * base["fd"]["generated"],
            ),
            "kid_lite2<=0.03": (
                ind["kid"]["generated"]["mean"],
                ind["kid"]["generated"]["mean"] <= 0.03,
            ),
            "diversity_lite2>=0.8": (
                ind["diversity"]["mean_ratio"],
                ind["diversity"]["mean_ratio"] >= 0.8,
            ),
            "consistency_heldout>=0.55": (gen, gen >= 0.55),
            "consistency>=ceiling+0.18": (gen - ceil, gen - ceil >= 0.18),
            "emotion/noise>=0.5": (
                m["emotion_vs_noise"]["ratio"],
                m["emotion_vs_noise"]["ratio"] >= 0.5,
            ),
            "fd_not_worse_in_2nd_half": (
                None if st is None else st["fd_last"] - st["fd_at_half"],
                None if st is None else not st["worsened"],
            ),
        }
        rows[path.stem] = {k: {"value": v, "met": ok} for k, (v, ok) in checks.items()}
    names = list(next(iter(rows.values())))
    print(f"\n{'goal':<28} " + " ".join(f"{n[:24]:>24}" for n in rows))
    for k in names:
        cells = []
        for r in rows.values():
            v, ok = r[k]["value"], r[k]["met"]
            cells.append(f"{'-' if v is None else f'{v:.3f}'} {'met' if ok else 'MISSED':>6}")
        print(f"{k:<28} " + " ".join(f"{c:>24}" for c in cells))
    result = {"baseline": str(baseline), "runs": rows}
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("/tmp/gan_bench/run"))
    p.add_argument("--source-run", type=Path, default=None)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--g-ch", type=int, default=16)
    p.add_argument("--d-ch", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--condition", choices=["audio", "image"], default="audio")
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--n-fd", type=int, default=500)
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--only", choices=["main", "ablation"], help="train and score one arm only")
    p.add_argument("--raw", action="store_true", help="also score each arm's raw (non-EMA) G")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default="/tmp/gan_bench/cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    p.add_argument("--set", action="append", default=[], help="extra gan.* overrides, k=v")
    p.add_argument(
        "--fd-samples", type=int, default=256, help="Lite0 FD at each checkpoint (stability)"
    )
    p.add_argument("--baseline", type=Path, help="a results JSON whose main arm is the baseline")
    p.add_argument("--time-only", action="store_true", help="train and time, do not score")
    p.add_argument(
        "--docs-grid",
        type=Path,
        help="also write the main arm's generated grids, one row per emotion, to this PNG "
        "(the held-out real paintings' grid goes beside it in the run folder, never the repo)",
    )
    p.add_argument(
        "--goals",
        type=Path,
        nargs="+",
        help="only print the goals table for these results files (needs --baseline)",
    )
    args = p.parse_args(argv)
    if args.goals:
        if not args.baseline:
            raise SystemExit("--goals needs --baseline RESULTS.json")
        return goals(args.goals, args.baseline, RESULTS.with_name("gan_goals.json"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    base = [
        f"gan.steps={args.steps}",
        f"gan.g_ch={args.g_ch}",
        f"gan.d_ch={args.d_ch}",
        f"gan.batch_size={args.batch}",
        f"gan.condition={args.condition}",
        f"gan.fd_samples={args.fd_samples}",
        f"gan.ckpt_every={max(50, args.steps // 8)}",
        f"gan.sample_every={max(50, args.steps // 6)}",
        *args.set,
    ]
    main_cfg = load_config(overrides=base).gan
    label = ("ema" if main_cfg.ema > 0 else "no ema") + (
        "+diffaugment" if main_cfg.diffaugment else ", no diffaugment"
    )
    arms = {"main": (label, args.run, base)}
    if not args.no_ablation and label != "no ema, no diffaugment":
        arms["ablation"] = (
            "no ema, no diffaugment",
            args.run.parent / (args.run.name + "_ablation"),
            [*base, "gan.ema=0.0", "gan.diffaugment="],
        )
    if args.only:  # e.g. train the ablation arm in a second process; a full run then resumes it
        arms = {args.only: arms[args.only]}
    results = {}
    for name, run, overrides in arms.values():
        stage_inputs(args.source_run or (args.run if run != args.run else None), run)
        results[name] = run_arm(name, run, overrides, args)
    print(
        f"\n{'arm':<26} {'steps':>5} {'wall':>7} | FD Lite0 (the D's own features) | independent"
        " (Lite2): FD, KID, diversity | held-out consistency: probe, k-NN k=5 | emotion/noise"
    )
    for name, arm in results.items():
        if args.time_only:
            t = arm["train"]
            print(
                f"{name}: {t['steps']} steps, {t['wall_seconds']:.0f} s, {t['sec_per_step']:.3f} s/step"
            )
            continue
        arm["stability"] = stability(arm["train"].get("fd_history", []))
        print(_row(name, arm))
        if "metrics_raw" in arm:
            print(_row("  same, raw G (no EMA)", arm, "metrics_raw"))
        if arm["stability"]:
            st = arm["stability"]
            print(
                f"  Lite0 FD over the second half: {st['fd_at_half']:.1f} -> {st['fd_last']:.1f}"
                f" (min {st['fd_min_second_half']:.1f}); worsened: {st['worsened']}"
            )
    out = {
        "threads": args.threads,
        "args": {k: str(v) for k, v in vars(args).items()},
        "arms": results,
    }
    if len(results) == 2:
        fds = [a["metrics"]["fd_effnet"]["generated"] for a in results.values()]
        out["fd_reduction_ema_diffaugment"] = 1 - fds[0] / fds[1]
        print(
            f"\n{label} vs neither: FD-EffNet {-100 * out['fd_reduction_ema_diffaugment']:+.1f}%"
            f" ({fds[1]:.1f} -> {fds[0]:.1f})"
        )
    if args.docs_grid:
        print(f"wrote {compose_grids(args.run, args.docs_grid)}")
        real = compose_grids(args.run, args.run / "gan" / "real_paintings.png", prefix="real_")
        print(f"wrote {real} (real paintings: not for the repository)")
    if args.baseline:
        base_m = _main_arm(args.baseline)["metrics"]
        out["vs_baseline"] = {
            name: {
                "baseline": str(args.baseline),
                "fd_independent_ratio": arm["metrics"]["independent"]["fd"]["generated"]
                / base_m["independent"]["fd"]["generated"],
            }
            for name, arm in results.items()
        }
        for name, v in out["vs_baseline"].items():
            print(f"{name}: independent FD {v['fd_independent_ratio']:.2f}x the baseline's")
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
