"""Shared-space benchmark: image-feature throughput, then retrieval on held-out speakers.

Usage::

    python benchmarks/retrieval.py --data ../shared/data --folds 0-4 \
        --classifier-run 'runs/bench_ser/resnet/si5/fold{fold}'     # SI-5: one classifier per fold
    python benchmarks/retrieval.py --data ../shared/data --epochs 4      # fold 0, quick classifier
    python benchmarks/retrieval.py --data ../shared/data --limit 600     # smoke run on a subset

1. Throughput at 224 px on one subset of paintings, cold (no cache): a naive per-image loop,
   a naive sequential batch loop, and the project's ``ImageFeatureExtractor``.
2. For each SI fold k (``--folds``, default 0): the speakers of fold k of
   ``audio/folds.csv`` are the test queries; the classifier (``--classifier-run DIR``
   holding ``classifier/best.pt`` trained without fold k, ``{fold}`` in DIR standing for k,
   or one trained here with ``--epochs``) gives the frozen audio embeddings; the
   projection heads train on the train speakers and every labelled painting (the gallery),
   and again without the test paintings to measure unseen paintings.
3. The table per fold and pooled over folds (every query counted once): retrieval top-1,
   R@k, mAP (plain and class-balanced) both ways, the classifier's accuracy on the same
   clips and the mAP its ranking of emotions allows, and the real-image ceiling in raw
   EfficientNet space.  The goals are judged on the pooled rows.

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

import numpy as np
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


def _check_classifier_split(clf_run: Path, run: Path, fold: int) -> dict:
    """The classifier's test clips must include every test clip of this run (fold ``fold``)."""
    ours = {
        it.path
        for it in read_manifest(run / "data" / "audio_manifest.csv", AudioItem)
        if it.split == "test"
    }
    preds = clf_run / "classifier" / "test_predictions.csv"
    if not preds.is_file():
        log.warning("%s missing: cannot verify the classifier never saw fold %d", preds, fold)
        return {"verified": False}
    with open(preds, newline="", encoding="utf-8") as fh:
        theirs = {row["path"] for row in csv.DictReader(fh)}
    if not ours <= theirs:
        raise SystemExit(
            f"{clf_run}: its test clips differ from fold {fold} here ({len(ours - theirs)} of ours were not held out)"
        )
    return {"verified": True, "test_clips": len(theirs)}


def _wmean(values, weights) -> float:
    w = np.asarray(weights, dtype=np.float64)
    return float(np.dot(np.asarray(values, dtype=np.float64), w) / w.sum())


def pool(reports: list[dict]) -> dict:
    """Retrieval reports of disjoint query sets merged as if every query were ranked once.

    Each fold's numbers are means over its queries, so query-weighted means are exactly
    the pooled means (per class: weighted by that class's queries).
    """
    n = [r["n_queries"] for r in reports]
    ks = list(reports[0]["recall"])
    classes = sorted({c for r in reports for c in r["per_class"]})
    per_class = {}
    for c in classes:
        rows = [r["per_class"][c] for r in reports if c in r["per_class"]]
        nc = [x["n"] for x in rows]
        recall_c = {k: _wmean([x["recall"][k] for x in rows], nc) for k in ks}
        per_class[c] = {
            "n": int(sum(nc)),
            "top1": recall_c.get("1"),  # top-1 is R@1, as in retrieval_metrics
            "recall": recall_c,
            "AP": _wmean([x["AP"] for x in rows], nc),
        }
    recall = {k: _wmean([r["recall"][k] for r in reports], n) for k in ks}
    return {
        "n_queries": int(sum(n)),
        "n_gallery": reports[0]["n_gallery"],
        "top1": recall.get("1"),
        "recall": recall,
        "mAP": _wmean([r["mAP"] for r in reports], n),
        "per_class": per_class,
        "balanced": {
            "top1": float(np.mean([per_class[c]["top1"] for c in classes])),
            "recall": {k: float(np.mean([per_class[c]["recall"][k] for c in classes])) for k in ks},
            "mAP": float(np.mean([per_class[c]["AP"] for c in classes])),
        },
        "chance": {"top1": _wmean([r["chance"]["top1"] for r in reports], n)},
    }


def pool_folds(folds: dict) -> dict:
    """The pooled SI table: retrieval rows, classifier accuracy and its mAP reference."""
    ms = [f["align"] for f in folds.values()]
    n = [m["n_test_clips"] for m in ms]
    clf = [m["classifier_on_same_clips"] for m in ms]
    out = {
        "n_test_clips": int(sum(n)),
        "n_test_speakers": int(sum(m["n_test_speakers"] for m in ms)),
        "classifier_accuracy": _wmean([c["accuracy"] for c in clf], n),
        "mAP_class_ranking": _wmean([c["mAP_class_ranking"] for c in clf], n),
        "audio_to_image": {"gallery_all": pool([m["audio_to_image"]["gallery_all"] for m in ms])},
        "image_to_audio": {"queries_all": pool([m["image_to_audio"]["queries_all"] for m in ms])},
    }
    if all("unseen_art" in m for m in ms):
        out["unseen_art"] = {
            "audio_to_image": {
                k: pool([m["unseen_art"]["audio_to_image"][k] for m in ms])
                for k in ("gallery_unseen", "gallery_all")
            },
            "image_to_audio": {
                "queries_unseen": pool(
                    [m["unseen_art"]["image_to_audio"]["queries_unseen"] for m in ms]
                )
            },
        }
    return out


def _fmt(x) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def _row(name: str, gallery: str, r: dict) -> str:
    return (
        f"  {name:<16}{gallery:<26}{_fmt(r['top1']):>7}{_fmt(r['balanced']['top1']):>7}"
        f"{_fmt(r['recall']['5']):>7}{_fmt(r['recall']['10']):>7}{_fmt(r['mAP']):>7}"
        f"{_fmt(r['balanced']['mAP']):>8}{_fmt(r['chance']['top1']):>8}"
    )


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
    pooled = res["pooled"]
    print(
        f"\nAudio -> image retrieval on unseen speakers (SI folds {', '.join(map(str, res['folds']))});"
        f" gallery: every labelled painting"
    )
    head = f"  {'fold':<16}{'queries (speakers)':<26}{'top-1':>7}{'bal.':>7}{'R@5':>7}{'R@10':>7}{'mAP':>7}{'bal.mAP':>8}{'chance':>8}{'clf acc':>9}{'clf mAP':>9}"
    print(head)
    for k, f in res["fold_results"].items():
        m = f["align"]
        c = m["classifier_on_same_clips"]
        print(
            _row(
                k,
                f"{m['n_test_clips']} ({m['n_test_speakers']})",
                m["audio_to_image"]["gallery_all"],
            )
            + f"{c['accuracy']:>9.3f}{c['mAP_class_ranking']:>9.3f}"
        )
    print(
        _row(
            "pooled",
            f"{pooled['n_test_clips']} ({pooled['n_test_speakers']})",
            pooled["audio_to_image"]["gallery_all"],
        )
        + f"{pooled['classifier_accuracy']:>9.3f}{pooled['mAP_class_ranking']:>9.3f}"
    )
    print(
        "  (clf acc: the classifier on the same clips; clf mAP: the mAP its ranking of emotions allows)"
    )
    print("\nPooled, other directions and galleries")
    print(head[:-18])
    print(_row("image->audio", "all paintings as queries", pooled["image_to_audio"]["queries_all"]))
    if "unseen_art" in pooled:
        u = pooled["unseen_art"]
        n_unseen = u["audio_to_image"]["gallery_unseen"]["n_gallery"]
        print("  heads refit without the test paintings:")
        print(
            _row(
                "audio->image",
                f"unseen paintings ({n_unseen})",
                u["audio_to_image"]["gallery_unseen"],
            )
        )
        print(_row("audio->image", "all, unseen mixed in", u["audio_to_image"]["gallery_all"]))
        print(_row("image->audio", "unseen paintings", u["image_to_audio"]["queries_unseen"]))
    ceil = next(iter(res["fold_results"].values()))["align"].get("real_image_ceiling") or {}
    for key, name in (("nn1", "1-NN leave-one-out"), ("probe", "balanced logistic probe")):
        if key in ceil:
            pc = ", ".join(f"{k} {v:.2f}" for k, v in ceil[key]["per_class"].items())
            print(f"  real-image ceiling, {name}: balanced {ceil[key]['balanced']:.3f} ({pc})")
    print("\nGoals:")
    for name, ok in res["goals"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def _folds(text: str) -> list[int]:
    """``"0-4"`` or ``"0,2,3"`` -> sorted fold numbers."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


def run_fold(args, data: Path, fold: int) -> dict:
    """Prepare fold ``fold``, get its classifier, extract features, train and score the heads."""
    cfg = load_config(
        overrides=[
            f"data.audio_root={data / 'audio'}",
            f"data.folds_csv={data / 'audio' / 'folds.csv'}",
            f"data.test_fold={fold}",
            f"data.art_root={data / 'art'}",
            "data.art_labels=labels.csv",
            *args.set,
        ]
    )
    from sound2sight.prepare import prepare_art, prepare_audio
    from sound2sight.train.align import extract_image_features, train_align

    run = args.run / f"fold{fold}"
    if run.exists():
        shutil.rmtree(run)
    prepare_audio(cfg, run)
    prepare_art(cfg, run)
    if args.limit:
        _subsample(run, args.limit, cfg.seed)
    res: dict = {
        "image_stage": {k: v for k, v in extract_image_features(cfg, run).items() if k != "ceiling"}
    }
    ckpt = run / "classifier" / "best.pt"
    if args.classifier_run:
        clf_run = Path(args.classifier_run.replace("{fold}", str(fold)))
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clf_run / "classifier" / "best.pt", ckpt)
        res["classifier"] = {
            "source": f"given: {clf_run}",
            **_check_classifier_split(clf_run, run, fold),
        }
    else:
        from dataclasses import replace

        from sound2sight.voice.train import train_classifier

        quick = replace(cfg, train=replace(cfg.train, epochs=args.epochs))
        t0 = time.perf_counter()
        clf = train_classifier(quick, run)
        res["classifier"] = {
            "source": f"trained here, {args.epochs} epochs only (reduced)",
            "seconds": time.perf_counter() - t0,
            "test": clf.get("test"),
        }
    res["align"] = train_align(cfg, run, resume=False)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=0, help="clips and paintings kept (0 = all)")
    ap.add_argument("--folds", type=_folds, default=[0], help="SI folds as test speakers: 0-4, 0,2")
    ap.add_argument(
        "--classifier-run",
        help="run folder with classifier/best.pt trained without the test fold; {fold} = fold number",
    )
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the quick classifier")
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "bench-retrieval")
    ap.add_argument("--throughput-images", type=int, default=320)
    ap.add_argument("--naive-images", type=int, default=48)
    ap.add_argument("--set", action="append", default=[], help="config override a.b=v")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.classifier_run and len(args.folds) > 1 and "{fold}" not in args.classifier_run:
        ap.error("--classifier-run needs {fold} in it when several folds are run")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t_start = time.perf_counter()
    data = args.data.resolve()
    res: dict = {"data": str(data), "limit": args.limit, "folds": args.folds}
    folds = {f"fold{k}": run_fold(args, data, k) for k in args.folds}
    cfg = load_config(overrides=args.set)
    art_run = args.run / f"fold{args.folds[0]}"
    art = [
        it.path for it in read_manifest(art_run / "data" / "art_manifest.csv", ArtItem) if it.label
    ]
    random.Random(0).shuffle(art)
    res["throughput"] = throughput(
        art[: args.throughput_images],
        naive_n=args.naive_images,
        batch_size=cfg.image.batch_size,
        workers=cfg.image.num_workers,
    )
    res["fold_results"] = folds
    res["pooled"] = p = pool_folds(folds)
    r, clf_acc = p["audio_to_image"]["gallery_all"], p["classifier_accuracy"]
    res["goals"] = {
        f"pooled top-1 {r['top1']:.3f} >= classifier accuracy {clf_acc:.3f} - 0.01": r["top1"]
        >= clf_acc - 0.01,
        **{
            f"{k} top-1 {f['align']['audio_to_image']['gallery_all']['top1']:.3f} >= classifier"
            f" {f['align']['classifier_on_same_clips']['accuracy']:.3f} - 0.01": f["align"][
                "audio_to_image"
            ]["gallery_all"]["top1"]
            >= f["align"]["classifier_on_same_clips"]["accuracy"] - 0.01
            for k, f in folds.items()
        },
        f"pooled mAP {r['mAP']:.3f} >= 0.80 (the classifier's ranking allows {p['mAP_class_ranking']:.3f})": r[
            "mAP"
        ]
        >= 0.80,
        f"extractor {res['throughput']['extractor']['imgs_per_s']:.1f} img/s >= 25": res[
            "throughput"
        ]["extractor"]["imgs_per_s"]
        >= 25,
        "real-image ceiling reported": bool(
            folds[f"fold{args.folds[0]}"]["align"].get("real_image_ceiling")
        ),
    }
    res["seconds"] = time.perf_counter() - t_start
    atomic_write_json(args.out, res)
    print_table(res)
    print(f"\nwrote {args.out} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
