"""Speech-emotion benchmark: CNN architectures x protocols, beside the eGeMAPS + SVM baseline.

Protocols
---------
SI-5     speaker-independent: train on 4 folds of ``folds.csv``, predict the 5th; accuracy and
         macro-F1 over the pooled out-of-fold predictions of every clip, plus per corpus.
seed     random stratified 80/20 split, speakers LEAK across it (only to compare with the
         paper's figure; never the headline).

Usage::

    python benchmarks/ser.py --data ../shared/data/audio --archs resnet --epochs 12
    python benchmarks/ser.py --only baseline            # eGeMAPS + SVM rows only
    python benchmarks/ser.py --quick                    # 1 fold, 2 epochs: a smoke run

Prints one table and writes ``benchmarks/results/ser.json`` (merged with earlier rows, so
sections run at different times accumulate).  Progress goes to the log (``--log``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from sound2sight.cache import FeatureCache, file_sha256
from sound2sight.config import load_config
from sound2sight.datasets.base import AudioItem, assign_folds, read_folds_csv
from sound2sight.io import atomic_write_text
from sound2sight.labels import EMOTIONS, LabelMap
from sound2sight.metrics import accuracy, group_accuracy, macro_f1
from sound2sight.train.common import cache_root

log = logging.getLogger("sound2sight.benchmarks.ser")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ser.json"


# ----------------------------------------------------------------------------- data
def _fallback_items(root: Path) -> list[AudioItem]:
    """Parse the four corpora's own file names (used until the dataset adapters exist)."""
    lm, items = LabelMap(), []
    for p in sorted((root / "RAVDESS").rglob("*.flac")):
        parts = p.stem.split("-")
        items.append(
            AudioItem(str(p), lm(parts[2]) or "", parts[2], f"RAVDESS:{parts[6]}", "RAVDESS")
        )
    for p in sorted((root / "TESS").rglob("*.flac")):
        raw = p.stem.split("_")[-1]
        items.append(AudioItem(str(p), lm(raw) or "", raw, f"TESS:{p.stem.split('_')[0]}", "TESS"))
    for p in sorted((root / "SAVEE").rglob("*.flac")):
        spk, rest = p.stem.split("_", 1)
        raw = re.match(r"[a-z]+", rest).group(0)
        items.append(AudioItem(str(p), lm(raw) or "", raw, f"SAVEE:{spk}", "SAVEE"))
    for p in sorted((root / "CREMA-D").rglob("*.mp3")):
        parts = p.stem.split("_")
        items.append(
            AudioItem(str(p), lm(parts[2]) or "", parts[2], f"CREMA-D:{parts[0]}", "CREMA-D")
        )
    return [it for it in items if it.label]


def load_items(root: Path) -> list[AudioItem]:
    """Manifest rows with SI-5 folds from ``folds.csv``."""
    try:
        from sound2sight.datasets import load_audio_corpus

        items = [it for it in load_audio_corpus(root).items if it.label]
        source = "adapters"
    except ImportError:
        items, source = _fallback_items(root), "file-name fallback"
    folds = read_folds_csv(root / "folds.csv") if (root / "folds.csv").is_file() else None
    items = assign_folds(items, n_folds=5, folds=folds)
    log.info("%d clips from %s (%s)", len(items), root, source)
    return items


def seed_split(items: list[AudioItem], *, seed: int = 0, test_size: float = 0.2) -> np.ndarray:
    """Boolean test mask of a random stratified split (speaker-LEAKING)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(items))
    _, test = train_test_split(
        idx, test_size=test_size, stratify=[it.label for it in items], random_state=seed
    )
    mask = np.zeros(len(items), bool)
    mask[test] = True
    return mask


def summarise(y_true, y_pred, corpora) -> dict:
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n_classes=len(EMOTIONS)),
        "per_corpus_accuracy": group_accuracy(y_true, y_pred, corpora),
        "n": int(len(y_true)),
    }


# ----------------------------------------------------------------------------- baseline
def egemaps_features(items: list[AudioItem], root: Path) -> np.ndarray:
    """eGeMAPSv02 functionals (88-d) per clip, cached by file content."""
    import opensmile
    from tqdm.auto import tqdm

    from sound2sight.voice.audio import load_audio

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    cache = FeatureCache(root, namespace=f"egemaps-v02-os{opensmile.__version__}")
    out = []
    for it in tqdm(items, desc="eGeMAPS", mininterval=30):
        key = file_sha256(it.path)
        feats = cache.get(key)
        if feats is None:
            wave = load_audio(it.path, sample_rate=16000)
            feats = smile.process_signal(wave, 16000).to_numpy()[0].astype(np.float32)
            cache.put(key, feats)
        out.append(feats)
    return np.stack(out)  # (N, 88)


def _svm_predict(x_train, y_train, x_test) -> np.ndarray:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    clf = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, class_weight="balanced"))
    return clf.fit(x_train, y_train).predict(x_test)


def run_baseline(items: list[AudioItem], feats_root: Path, *, folds: list[int]) -> dict:
    t0 = time.perf_counter()
    x = egemaps_features(items, feats_root)
    t_feat = time.perf_counter() - t0
    y = np.array([EMOTIONS.index(it.label) for it in items])
    fold = np.array([it.fold for it in items])
    corpora = [it.corpus for it in items]
    pred = np.full(len(items), -1)
    times = []
    for k in folds:
        t = time.perf_counter()
        test = fold == k
        pred[test] = _svm_predict(x[~test], y[~test], x[test])
        times.append(time.perf_counter() - t)
    done = pred >= 0
    si5 = summarise(y[done], pred[done], [c for c, d in zip(corpora, done, strict=True) if d])
    mask = seed_split(items)
    seed_pred = _svm_predict(x[~mask], y[~mask], x[mask])
    seed = summarise(y[mask], seed_pred, [c for c, m in zip(corpora, mask, strict=True) if m])
    return {
        "name": "eGeMAPSv02 + RBF SVM",
        "si5": si5,
        "folds": folds,
        "seed_leaking": seed,
        "seconds_per_fold": float(np.mean(times)),
        "feature_seconds": t_feat,
    }


def run_fusion(items: list[AudioItem], feats_root: Path, oof_csv: Path) -> dict:
    """Late fusion: mean of the CNN's out-of-fold probabilities and the SVM's (same folds)."""
    import csv

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    with open(oof_csv, newline="", encoding="utf-8") as fh:
        cnn = {r["path"]: [float(r[f"p_{e}"]) for e in EMOTIONS] for r in csv.DictReader(fh)}
    items = [it for it in items if it.path in cnn]
    x = egemaps_features(items, feats_root)
    y = np.array([EMOTIONS.index(it.label) for it in items])
    fold = np.array([it.fold for it in items])
    p_svm = np.zeros((len(items), len(EMOTIONS)))
    for k in sorted(set(fold.tolist())):
        test = fold == k
        clf = make_pipeline(
            StandardScaler(),
            SVC(kernel="rbf", C=1.0, class_weight="balanced", probability=True, random_state=0),
        )
        p_svm[test] = clf.fit(x[~test], y[~test]).predict_proba(x[test])
    p_cnn = np.array([cnn[it.path] for it in items])
    corpora = [it.corpus for it in items]
    return {
        "si5": summarise(y, (p_cnn + p_svm).argmax(1), corpora),
        "svm_probability_si5": summarise(y, p_svm.argmax(1), corpora),
        "folds": sorted(set(fold.tolist())),
    }


# ----------------------------------------------------------------------------- table
def _fmt(x, spec=".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def print_table(rows: dict) -> str:
    corp = ["CREMA-D", "RAVDESS", "SAVEE", "TESS"]
    head = (
        f"{'model':34s} {'SI-5 acc':>8s} {'SI-5 mF1':>8s} "
        + " ".join(f"{c[:7]:>7s}" for c in corp)
        + f" {'seed acc*':>9s} {'s/fold':>7s} folds"
    )
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        if "si5" not in r and "seed_leaking" not in r:
            continue
        si5, seed = r.get("si5") or {}, r.get("seed_leaking") or {}
        pc = si5.get("per_corpus_accuracy", {})
        lines.append(
            f"{name:34s} {_fmt(si5.get('accuracy')):>8s} {_fmt(si5.get('macro_f1')):>8s} "
            + " ".join(f"{_fmt(pc.get(c)):>7s}" for c in corp)
            + f" {_fmt(seed.get('accuracy')):>9s} {_fmt(r.get('seconds_per_fold'), '.0f'):>7s}"
            + f" {','.join(map(str, r.get('folds', [])))}"
        )
    seeds = rows.get("optuna", {}).get("fold0_seeds")
    if seeds:
        u, t = seeds["untuned_resnet_w16"], seeds["tuned_best_trial"]
        lines.append(
            f"fold 0 (held out of tuning), 3 seeds: untuned acc {u['accuracy']['mean']:.3f} "
            f"+/- {u['accuracy']['sd']:.3f} mF1 {u['macro_f1']['mean']:.3f} +/- "
            f"{u['macro_f1']['sd']:.3f} | tuned acc {t['accuracy']['mean']:.3f} +/- "
            f"{t['accuracy']['sd']:.3f} mF1 {t['macro_f1']['mean']:.3f} +/- {t['macro_f1']['sd']:.3f}"
        )
    lines.append(
        "* seed protocol = random stratified 80/20 split, speakers LEAK (not the headline)"
    )
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--archs", default="resnet", help="comma-separated, from ARCHITECTURES")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--quick", action="store_true", help="fold 0 only, 2 epochs")
    ap.add_argument(
        "--only",
        default="",
        help="baseline | cnn | seed | tune | tuned | fusion | table (default: all)",
    )
    ap.add_argument("--trials", type=int, default=8, help="Optuna trials (--only tune)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--tag", default="", help="suffix for the result row names")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_ser")
    ap.add_argument("--log", type=Path, default=None)
    args = ap.parse_args(argv)
    handlers = [logging.StreamHandler(sys.stderr)]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, format="%(asctime)s %(name)s: %(message)s"
    )
    folds = [0] if args.quick else [int(f) for f in args.folds.split(",")]
    epochs = 2 if args.quick else args.epochs
    updates: dict[str, dict] = {}  # what this process measured, merged into the file by field

    def update(name: str, **fields) -> None:
        updates.setdefault(name, {"name": name}).update(fields)
        current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}
        for key, value in updates.items():
            current["rows"].setdefault(key, {}).update(value)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(RESULTS, json.dumps(current, indent=2) + "\n")

    if args.only != "table":
        items = load_items(args.data)
    if args.only in ("", "baseline"):
        update("eGeMAPS+SVM", **run_baseline(items, cache_root(load_config()), folds=folds))
    if args.only == "tune":
        from sound2sight.voice.tune import tune

        tcfg = load_config(overrides=[f"tune.epochs={epochs}", *args.set])
        update("optuna", tune=tune(tcfg, args.runs / "tune", n_trials=args.trials, items=items))
    archs = args.archs.split(",")
    if args.only == "fusion":  # --archs names result rows whose SI-5 predictions exist
        for name in archs:
            oof = args.runs / name / "si5" / "oof_predictions.csv"
            update(
                f"{name} + eGeMAPS-SVM fusion", **run_fusion(items, cache_root(load_config()), oof)
            )
    if args.only == "tuned":  # the best trial's values, on top of the same --set overrides
        best = json.loads((args.runs / "tune" / "tune" / "best.json").read_text())["best_params"]
        archs = [best.pop("arch")]
        args.set += [
            f"train.lr={best['lr']}",
            f"classifier.dropout={best['dropout']}",
            f"classifier.width={best['width']}",
            f"classifier.depth={best['depth']}",
            f"train.freq_mask={best['freq_mask']}",
            f"train.time_mask={best['time_mask']}",
            f"train.mixup={best['mixup']}",
        ]
        args.tag = args.tag or "-tuned"
    if args.only in ("", "cnn", "seed", "tuned"):
        from sound2sight.train.protocols import run_seed_protocol, run_si5

        for arch in archs:
            acfg = load_config(
                overrides=[f"train.epochs={epochs}", f"classifier.arch={arch}", *args.set]
            )
            name = f"{arch}{args.tag}"
            update(name, config={"classifier": vars(acfg.classifier), "train": vars(acfg.train)})
            if args.only in ("", "cnn", "tuned"):
                res = run_si5(acfg, args.runs / name / "si5", items=items, folds=folds)
                update(
                    name,
                    si5=res["pooled"],
                    folds=folds,
                    per_fold=res["per_fold"],
                    seconds_per_fold=res["seconds_per_fold"],
                    fold_epochs=res["epochs"],
                )
            if args.only in ("", "seed"):
                res = run_seed_protocol(acfg, args.runs / name / "seed", items=items)
                update(name, seed_leaking=res["test"], seed_seconds=res["seconds"])
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}
    rows = results["rows"]
    results["table"] = print_table(rows)
    atomic_write_text(RESULTS, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
