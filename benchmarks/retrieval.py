"""Shared-space benchmark: image-feature throughput, then retrieval on held-out speakers.

Usage::

    python benchmarks/retrieval.py --data ../shared/data --classifier-run /path/to/si5/fold0
    python benchmarks/retrieval.py --data ../shared/data --epochs 4      # trains a quick classifier
    python benchmarks/retrieval.py --data ../shared/data --limit 600     # smoke run on a subset

1. Throughput at 224 px on one subset of paintings, cold (no cache): a naive per-image loop,
   a naive sequential batch loop, and the project's ``ImageFeatureExtractor``.
2. The SI fold-0 protocol: speakers of fold 0 of ``audio/folds.csv`` are the test queries;
   the classifier (``--classifier-run DIR`` holding ``classifier/best.pt`` trained without
   fold 0, or one trained here with ``--epochs``) gives the frozen audio embeddings; the
   projection heads train on the train speakers and train paintings.
3. The table: retrieval top-1, R@k, mAP (plain and class-balanced) both ways, the
   classifier's accuracy on the same clips, and the real-image ceiling in raw EfficientNet space.

Writes ``benchmarks/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import shutil
import time
from pathlib import Path

import torch

from sound2sight.config import load_config
from sound2sight.datasets.base import ArtItem, AudioItem, read_manifest, write_manifest
from sound2sight.io import atomic_write_json

log = logging.getLogger("sound2sight.benchmarks.retrieval")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "retrieval.json"


def throughput(paths: list[str], *, naive_n: int, batch_size: int, workers: int) -> dict:
    """img/s of three ways to get (N, 1280) features from JPEG files, all cold."""
    from PIL import Image

    from sound2sight.models.image import ImageFeatureExtractor, load_image_encoder

    model, preprocess = load_image_encoder()
    torch.set_grad_enabled(False)
    out = {"image_size": 224, "threads": torch.get_num_threads()}
    sub = paths[:naive_n]
    preprocess(Image.open(sub[0]))  # warm-up outside the timers
    model.forward_features(torch.zeros(1, 3, 224, 224))
    t0 = time.perf_counter()
    for p in sub:  # one image per forward pass
        model.forward_features(preprocess(Image.open(p)).unsqueeze(0))
    out["naive_per_image"] = {"n": len(sub), "imgs_per_s": len(sub) / (time.perf_counter() - t0)}
    sub = paths[: 2 * naive_n]
    t0 = time.perf_counter()
    for s in range(0, len(sub), batch_size):  # decode sequentially, then one batched forward
        x = torch.stack([preprocess(Image.open(p)) for p in sub[s : s + batch_size]])
        model.forward_features(x)
    out["naive_batch"] = {"n": len(sub), "imgs_per_s": len(sub) / (time.perf_counter() - t0)}
    extractor = ImageFeatureExtractor(
        model, batch_size=batch_size, num_workers=workers, progress=False
    )
    extractor(paths[:batch_size])  # warm-up (fused copy, thread pool)
    t0 = time.perf_counter()
    res = extractor(paths)
    out["extractor"] = {
        "n": len(res.paths),
        "imgs_per_s": len(res.paths) / (time.perf_counter() - t0),
    }
    torch.set_grad_enabled(True)
    return out


def _subsample(run: Path, limit: int, seed: int) -> None:
    """Keep ``limit`` audio clips (whole speakers) and ``limit`` paintings, every split kept."""
    rng = random.Random(seed)
    audio = read_manifest(run / "data" / "audio_manifest.csv", AudioItem)
    speakers = sorted({it.speaker for it in audio})
    rng.shuffle(speakers)
    keep, n = set(), 0
    for spk in speakers:
        if n >= limit:
            break
        keep.add(spk)
        n += sum(it.speaker == spk for it in audio)
    write_manifest([it for it in audio if it.speaker in keep], run / "data" / "audio_manifest.csv")
    art = read_manifest(run / "data" / "art_manifest.csv", ArtItem)
    rng.shuffle(art)
    write_manifest(art[:limit], run / "data" / "art_manifest.csv")


def _check_classifier_split(clf_run: Path, run: Path) -> dict:
    """The classifier's test clips must be exactly this run's test clips (fold 0)."""
    ours = {
        it.path
        for it in read_manifest(run / "data" / "audio_manifest.csv", AudioItem)
        if it.split == "test"
    }
    preds = clf_run / "classifier" / "test_predictions.csv"
    if not preds.is_file():
        log.warning("%s missing: cannot verify the classifier never saw fold 0", preds)
        return {"verified": False}
    with open(preds, newline="", encoding="utf-8") as fh:
        theirs = {row["path"] for row in csv.DictReader(fh)}
    if not ours <= theirs:
        raise SystemExit(
            f"{clf_run}: its test clips differ from fold 0 here ({len(ours - theirs)} of ours were not held out)"
        )
    return {"verified": True, "test_clips": len(theirs)}


def _fmt(x) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def print_table(res: dict) -> None:
    tp = res["throughput"]
    print(f"\nImage features at {tp['image_size']} px, cold, {tp['threads']} torch threads")
    base = tp["naive_batch"]["imgs_per_s"]
    for key, name in (
        ("naive_per_image", "naive per-image loop"),
        ("naive_batch", "naive batch loop"),
        ("extractor", "ImageFeatureExtractor"),
    ):
        r = tp[key]
        print(
            f"  {name:<24} {r['n']:>5} imgs {r['imgs_per_s']:7.1f} img/s  ({r['imgs_per_s'] / base:.2f}x batch loop)"
        )
    m = res["align"]
    clf = m["classifier_on_same_clips"]
    print(
        f"\nRetrieval, SI fold 0: {m['n_test_clips']} clips from {m['n_test_speakers']} unseen speakers; classifier: {res['classifier']['source']}"
    )
    head = f"  {'direction':<13}{'gallery / queries':<22}{'top-1':>7}{'bal.':>7}{'R@5':>7}{'R@10':>7}{'mAP':>7}{'bal.mAP':>8}{'chance':>8}"
    print(head)
    rows = [("audio->image", f"all art ({m['n_gallery']})", m["audio_to_image"]["gallery_all"])]
    for key, name in (
        ("gallery_fit_art", "art the head fit"),
        ("gallery_heldout_art", "held-out art"),
    ):
        if key in m["audio_to_image"]:
            g = m["audio_to_image"][key]
            rows.append(("audio->image", f"{name} ({g['n_gallery']})", g))
    rows.append(("image->audio", "all art queries", m["image_to_audio"]["queries_all"]))
    if "queries_heldout_art" in m["image_to_audio"]:
        rows.append(
            ("image->audio", "held-out art queries", m["image_to_audio"]["queries_heldout_art"])
        )
    for d, g, r in rows:
        print(
            f"  {d:<13}{g:<22}{_fmt(r['top1']):>7}{_fmt(r['balanced']['top1']):>7}{_fmt(r['recall']['5']):>7}{_fmt(r['recall']['10']):>7}{_fmt(r['mAP']):>7}{_fmt(r['balanced']['mAP']):>8}{_fmt(r['chance']['top1']):>8}"
        )
    print(
        f"  classifier on the same clips: accuracy {clf['accuracy']:.3f}, balanced {clf['balanced_accuracy']:.3f}"
    )
    ceil = m.get("real_image_ceiling") or {}
    for key, name in (("nn1", "1-NN leave-one-out"), ("probe", "balanced logistic probe")):
        if key in ceil:
            pc = ", ".join(f"{k} {v:.2f}" for k, v in ceil[key]["per_class"].items())
            print(f"  real-image ceiling, {name}: balanced {ceil[key]['balanced']:.3f} ({pc})")
    print("\nGoals:")
    for name, ok in res["goals"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=0, help="clips and paintings kept (0 = all)")
    ap.add_argument(
        "--classifier-run", type=Path, help="run folder with classifier/best.pt (fold 0 held out)"
    )
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the quick classifier")
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "bench-retrieval")
    ap.add_argument("--throughput-images", type=int, default=320)
    ap.add_argument("--naive-images", type=int, default=48)
    ap.add_argument("--set", action="append", default=[], help="config override a.b=v")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t_start = time.perf_counter()
    data = args.data.resolve()
    cfg = load_config(
        overrides=[
            f"data.audio_root={data / 'audio'}",
            f"data.folds_csv={data / 'audio' / 'folds.csv'}",
            "data.test_fold=0",
            f"data.art_root={data / 'art'}",
            "data.art_labels=labels.csv",
            *args.set,
        ]
    )
    from sound2sight.prepare import prepare_art, prepare_audio
    from sound2sight.train.align import extract_image_features, train_align

    run = args.run
    if run.exists():
        shutil.rmtree(run)
    prepare_audio(cfg, run)
    prepare_art(cfg, run)
    if args.limit:
        _subsample(run, args.limit, cfg.seed)
    art = [it.path for it in read_manifest(run / "data" / "art_manifest.csv", ArtItem) if it.label]
    random.Random(0).shuffle(art)
    res: dict = {"data": str(data), "limit": args.limit}
    res["throughput"] = throughput(
        art[: args.throughput_images],
        naive_n=args.naive_images,
        batch_size=cfg.image.batch_size,
        workers=cfg.image.num_workers,
    )
    res["image_stage"] = {
        k: v for k, v in extract_image_features(cfg, run).items() if k != "ceiling"
    }
    ckpt = run / "classifier" / "best.pt"
    if args.classifier_run:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.classifier_run / "classifier" / "best.pt", ckpt)
        res["classifier"] = {
            "source": f"given: {args.classifier_run}",
            **_check_classifier_split(args.classifier_run, run),
        }
    else:
        from dataclasses import replace

        from sound2sight.train.emotion import train_classifier

        quick = replace(cfg, train=replace(cfg.train, epochs=args.epochs))
        t0 = time.perf_counter()
        clf = train_classifier(quick, run)
        res["classifier"] = {
            "source": f"trained here, {args.epochs} epochs only (reduced)",
            "seconds": time.perf_counter() - t0,
            "test": clf.get("test"),
        }
    m = train_align(cfg, run, resume=False)
    res["align"] = m
    r, clf_acc = m["audio_to_image"]["gallery_all"], m["classifier_on_same_clips"]["accuracy"]
    res["goals"] = {
        f"top-1 {r['top1']:.3f} >= classifier accuracy {clf_acc:.3f} - 0.01": r["top1"]
        >= clf_acc - 0.01,
        f"mAP {r['mAP']:.3f} >= 0.80": r["mAP"] >= 0.80,
        f"extractor {res['throughput']['extractor']['imgs_per_s']:.1f} img/s >= 25": res[
            "throughput"
        ]["extractor"]["imgs_per_s"]
        >= 25,
        "real-image ceiling reported": bool(m.get("real_image_ceiling")),
    }
    res["seconds"] = time.perf_counter() - t_start
    atomic_write_json(args.out, res)
    print_table(res)
    print(f"\nwrote {args.out} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
