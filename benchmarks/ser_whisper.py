"""Speech-emotion benchmark of the Whisper voice backbone: encoders x layer choices x seeds.

Rows (each SI-5 pooled over the 5 speaker folds of ``folds.csv``, repeated over ``--seeds``;
the seed also redraws the validation speakers):

``<enc> last``          the head on the last layer only
``<enc> best layer``    the head on the single layer with the best *validation* macro-F1
                        (mean over folds of the validation speakers inside the training
                        folds: the test fold never picks it)
``<enc> weighted``      learned softmax weights over every layer
``<enc> middle``        learned softmax weights over the middle blocks (the default)
``both <variant>``      tiny.en and base side by side

Plus ``--random-split``: the seed's random stratified 80/20 split (speakers LEAK; only to
compare with the paper) for the default head; and ``--tune N``: an Optuna study of ``N``
trials over the head and the encoder (``sound2sight.voice.tune``: lr, dropout, layers,
pooling, widths, tiny.en / base / both) with fold 0 held out of it, then the best trial's
row ``tuned (Optuna, N trials)``.  Folds 1-4 were the study's development data, so the row
also reports fold 0 alone, the only fold the study never saw.

Usage::

    python benchmarks/ser_whisper.py --data ../shared/data/audio               # everything
    python benchmarks/ser_whisper.py --encoders tiny.en --variants weighted --seeds 0

Prints a table (mean +/- sd over seeds) and writes ``benchmarks/results/ser_whisper.json``
(merged with earlier rows).  Features come from the voice cache (computed on first use).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ser import load_items, seed_split  # noqa: E402
from sound2sight.config import load_config  # noqa: E402
from sound2sight.io import atomic_write_text  # noqa: E402
from sound2sight.labels import EMOTIONS  # noqa: E402

log = logging.getLogger("sound2sight.benchmarks.ser_whisper")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ser_whisper.json"
CORPORA = ["CREMA-D", "RAVDESS", "SAVEE", "TESS"]


def _si5(cfg, out: Path, items, feats, folds) -> dict:
    from sound2sight.train.protocols import run_si5

    res = run_si5(cfg, out, items=items, folds=folds, mels=feats)
    val = [
        json.loads((out / f"fold{k}" / "classifier" / "metrics.json").read_text())["val"]
        for k in folds
    ]
    res["val_macro_f1_mean"] = float(np.mean([v["val_macro_f1"] for v in val if v]))
    return res


def _agg(runs: list[dict]) -> dict:
    """mean and sd over seeds of accuracy, macro-F1 and per-corpus accuracy."""
    out = {}
    for key in ("accuracy", "macro_f1"):
        v = np.array([r["pooled"][key] for r in runs])
        out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    out["per_corpus_accuracy"] = {
        c: float(np.mean([r["pooled"]["per_corpus_accuracy"][c] for r in runs])) for c in CORPORA
    }
    out["seeds"] = [r["seed"] for r in runs]
    out["runs"] = [
        {
            "seed": r["seed"],
            "accuracy": r["pooled"]["accuracy"],
            "macro_f1": r["pooled"]["macro_f1"],
        }
        for r in runs
    ]
    out["seconds_per_fold"] = float(np.mean([r["seconds_per_fold"] for r in runs]))
    out["confusion"] = runs[0]["pooled"].get("confusion")
    return out


def _random_split(cfg, out: Path, items, feats) -> dict:
    """Train on a random 80 % of clips (val: 15 % of those), test on the rest (speakers leak)."""
    import copy

    from sound2sight.voice.train import train_classifier

    test = seed_split(items, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for it, t in zip(items, test, strict=True):
        r = copy.copy(it)
        r.split = "test" if t else ("val" if rng.random() < 0.15 else "train")
        rows.append(r)
    metrics = train_classifier(cfg, out, items=rows, mels=feats, resume=True, progress=False)
    return metrics["test"]


def _tuned_row(args, items, seeds: list[int], folds: list[int], update) -> None:
    """Optuna over the head and encoder (fold 0 held out), then SI-5 of the best trial."""
    import optuna

    from sound2sight.voice.cache import load_voice_features
    from sound2sight.voice.tune import suggest_config, tune

    base = load_config(overrides=[f"tune.epochs={args.tune_epochs}", "data.test_fold=0", *args.set])
    t0 = time.perf_counter()
    done = args.runs / "tune" / "tune" / "best.json"  # a rerun adds only the missing trials
    have = json.loads(done.read_text())["n_trials"] if done.is_file() else 0
    study = tune(base, args.runs / "tune", n_trials=max(0, args.tune - have), items=items)
    best = study["best_params"]
    log.info(
        "tune: best val macro-F1 %.4f with %s (%.0f s)",
        study["best_value"],
        best,
        time.perf_counter() - t0,
    )

    def chosen(seed: int):  # the best trial's values, set the way the study set them
        return suggest_config(
            optuna.trial.FixedTrial(best), load_config(overrides=[f"seed={seed}", *args.set])
        )

    its, x = load_voice_features(items, chosen(seeds[0]), progress=False)
    runs = []
    for s in seeds:
        c = chosen(s)
        r = _si5(c, args.runs / f"tuned{args.tag}" / f"seed{s}", its, x, folds)
        r["seed"] = s
        runs.append(r)
    fold0 = [r["per_fold"][0] for r in runs] if 0 in folds else []
    default0 = []  # the default head's fold 0 on the same seeds (reused from its own rows)
    for s in seeds if fold0 else []:
        c0 = load_config(overrides=[f"seed={s}", *args.set])
        d_its, d_x = load_voice_features(items, c0, progress=False)
        default0.append(_si5(c0, args.runs / "tiny.en-middle" / f"seed{s}", d_its, d_x, [0]))
    update(
        f"tuned (Optuna, {study['n_trials']} trials){args.tag}",
        si5=_agg(runs),
        layer=best.get("layers", ""),
        folds=folds,
        config=vars(c.classifier) | {"train": vars(c.train)},
        tune={k: v for k, v in study.items() if k != "storage"}
        | {"seconds": time.perf_counter() - t0},
        fold0_never_tuned_on={
            "accuracy": float(np.mean([f["accuracy"] for f in fold0])),
            "macro_f1": float(np.mean([f["macro_f1"] for f in fold0])),
        }
        if fold0
        else None,
        fold0_default_head={
            "accuracy": float(np.mean([d["pooled"]["accuracy"] for d in default0])),
            "macro_f1": float(np.mean([d["pooled"]["macro_f1"] for d in default0])),
        }
        if default0
        else None,
    )


def print_table(rows: dict) -> str:
    head = (
        f"{'voice model':28s} {'SI-5 acc':>14s} {'SI-5 mF1':>14s} "
        + " ".join(f"{c[:7]:>7s}" for c in CORPORA)
        + f" {'s/fold':>6s} {'layer':>5s}"
    )
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        if "si5" not in r:
            continue
        s = r["si5"]

        def pm(k: str, s: dict = s) -> str:
            return f"{s[k]['mean']:.3f} ± {s[k]['sd']:.3f}"

        pc = s["per_corpus_accuracy"]
        lines.append(
            f"{name:28s} {pm('accuracy'):>14s} {pm('macro_f1'):>14s} "
            + " ".join(f"{pc[c]:7.3f}" for c in CORPORA)
            + f" {s['seconds_per_fold']:6.0f} {str(r.get('layer', '')):>5s}"
        )
    for name, r in rows.items():
        if "random_split" in r:
            t = r["random_split"]
            lines.append(
                f"{name} on a random split (speakers LEAK): acc {t['accuracy']:.3f} "
                f"mF1 {t['macro_f1']:.3f}"
            )
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--encoders", default="tiny.en,base", help="comma list of tiny.en, base")
    ap.add_argument("--variants", default="last,best-layer,weighted,middle")
    ap.add_argument(
        "--select-epochs", type=int, default=12, help="epochs per single-layer run of best-layer"
    )
    ap.add_argument("--both", action="store_true", help="also tiny.en + base side by side")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--random-split", action="store_true", help="also the speaker-leaking split")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--tag", default="", help="suffix for the row names")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_ser_whisper")
    ap.add_argument(
        "--tune", type=int, default=0, metavar="N", help="Optuna trials, then the tuned row"
    )
    ap.add_argument("--tune-epochs", type=int, default=12, help="epochs per Optuna trial")
    ap.add_argument("--only-table", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    seeds = [int(s) for s in args.seeds.split(",")]
    folds = [int(f) for f in args.folds.split(",")]
    current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}

    def update(name: str, **fields) -> None:
        current["rows"].setdefault(name, {"name": name}).update(fields)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(RESULTS, json.dumps(current, indent=2) + "\n")

    if args.tune:
        _tuned_row(args, load_items(args.data), seeds, folds, update)
    elif not args.only_table:
        from sound2sight.voice.cache import load_voice_features

        items = load_items(args.data)
        plan = [(e, v) for e in args.encoders.split(",") for v in args.variants.split(",")]
        if args.both:
            plan += [("both", v) for v in args.variants.split(",") if v != "best-layer"]
        feats: dict[str, tuple] = {}
        for enc, variant in plan:
            base = load_config(overrides=[f"classifier.encoder={enc}", *args.set])
            if enc not in feats:
                t0 = time.perf_counter()
                feats[enc] = load_voice_features(items, base, progress=False)
                log.info(
                    "%s features %s in %.0f s", enc, feats[enc][1].shape, time.perf_counter() - t0
                )
            its, x = feats[enc]
            n_layers = x.shape[1]
            name = f"{enc} {variant}{args.tag}"
            layer = {"last": "last", "weighted": "all", "middle": "middle"}.get(variant)
            if variant == "best-layer":  # pick on validation speakers, seed 0
                scores = {}
                for li in range(n_layers):
                    c = load_config(
                        overrides=[
                            f"classifier.encoder={enc}",
                            f"classifier.layers={li}",
                            f"train.epochs={args.select_epochs}",
                            *args.set,
                        ]
                    )
                    pick = args.runs / f"{enc}-layer{li}-select{args.select_epochs}ep" / "seed0"
                    r = _si5(c, pick, its, x, folds)  # its own folder: the row retrains
                    scores[li] = r["val_macro_f1_mean"]
                    log.info(
                        "%s layer %d: val macro-F1 %.4f (SI-5 test acc %.4f)",
                        enc,
                        li,
                        scores[li],
                        r["pooled"]["accuracy"],
                    )
                layer = str(max(scores, key=scores.get))
                update(name, layer_val_macro_f1=scores)
            runs = []
            for s in seeds:
                c = load_config(
                    overrides=[
                        f"classifier.encoder={enc}",
                        f"classifier.layers={layer}",
                        f"seed={s}",
                        *args.set,
                    ]
                )
                tag = (
                    f"{enc}-layer{layer}"
                    if variant == "best-layer"
                    else f"{enc}-{variant}{args.tag}"
                )
                r = _si5(c, args.runs / tag / f"seed{s}", its, x, folds)
                r["seed"] = s
                runs.append(r)
            cfgd = vars(c.classifier) | {"train": vars(c.train)}
            update(name, si5=_agg(runs), layer=layer, folds=folds, config=cfgd)
            if args.random_split and variant == "middle":
                c = load_config(overrides=[f"classifier.encoder={enc}", *args.set])
                update(
                    name,
                    random_split=_random_split(c, args.runs / f"{enc}-random{args.tag}", its, x),
                )
    current["table"] = print_table(current["rows"])
    atomic_write_text(RESULTS, json.dumps(current, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "print_table", "EMOTIONS"]
