"""``sound2sight`` command line: thin verbs over the library.

Every verb that trains or evaluates takes ``--run DIR``; its config is the run's saved
``config.yaml`` (if any), then ``--config FILE``, then ``--set a.b=v`` overrides.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("sound2sight.cli")

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _config(args: argparse.Namespace):
    import yaml

    from sound2sight.config import load_config

    base = None
    saved = Path(args.run) / "config.yaml" if getattr(args, "run", None) else None
    if saved is not None and saved.is_file():
        base = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    cfg = load_config(getattr(args, "config", None), overrides=args.set or [], base=base)
    if getattr(args, "device", None):
        cfg.device = args.device
    return cfg


def _add_config_args(p: argparse.ArgumentParser, *, run_required: bool = True) -> None:
    p.add_argument("--run", required=run_required, help="run directory")
    p.add_argument("--config", help="YAML holding only what differs from the defaults")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.lr=1e-3"
    )
    p.add_argument("--device", help="cpu | cuda | cuda:N")


def cmd_demo_data(args) -> int:
    from sound2sight.synthetic import make_demo_corpus

    counts = make_demo_corpus(args.out, seed=args.seed)
    print(json.dumps(counts, indent=2))
    return 0


def cmd_prepare(args) -> int:
    from sound2sight.prepare import format_prepare_table, prepare_art, prepare_audio

    cfg = _config(args)
    fn = prepare_audio if args.what == "audio" else prepare_art
    summary = fn(cfg, Path(args.run))
    print(format_prepare_table(summary))
    return 0


def cmd_train(args) -> int:
    from sound2sight.workflow import run_stage, train_all

    cfg = _config(args)
    run = Path(args.run)
    if args.stage == "all":
        times = train_all(cfg, run, force=args.force)
        print(json.dumps(times, indent=2))
        print(f"report: {run / 'report.html'}")
        return 0
    names = {"classifier": ["classifier"], "align": ["image", "align"], "gan": ["gan", "gan-eval"]}
    for name in names.get(args.stage, [args.stage]):
        run_stage(name, cfg, run, force=True)
    return 0


def cmd_tune(args) -> int:
    from sound2sight.train.tune import tune

    cfg = _config(args)
    best = tune(cfg, Path(args.run), n_trials=args.trials, storage=args.storage)
    print(json.dumps(best, indent=2, default=str))
    return 0


def cmd_evaluate(args) -> int:
    from sound2sight.workflow import run_stage

    cfg = _config(args)
    stage = {"gan": "gan-eval", "classifier": "classifier", "align": "align"}[args.stage]
    if stage != "gan-eval":
        path = Path(args.run) / stage / "metrics.json"
        print(path.read_text() if path.is_file() else f"{path}: train the {stage} stage first")
        return 0 if path.is_file() else 1
    print(json.dumps(run_stage(stage, cfg, Path(args.run), force=True), indent=2, default=str))
    return 0


def cmd_paint(args) -> int:
    from sound2sight.pipeline import Sound2Sight, save_result

    pipe = Sound2Sight.from_run(args.run, device=args.device or "cpu")
    t0 = time.perf_counter()
    result = pipe(args.voice, n_images=args.n, seed=args.seed)
    out = save_result(result, args.out, name=Path(args.voice).stem)
    print(
        f"{args.voice}: {result.emotion} "
        + " ".join(f"{k}={v:.2f}" for k, v in result.probabilities.items())
        + f"  ({(time.perf_counter() - t0) * 1000:.0f} ms)"
    )
    print(f"wrote {out}")
    return 0


def cmd_report(args) -> int:
    from sound2sight.report import write_report

    print(f"wrote {write_report(Path(args.run))}")
    return 0


def cmd_serve(args) -> int:
    from sound2sight.web.serving import serve

    serve(args.run, host=args.host, port=args.port)
    return 0


def cmd_export(args) -> int:
    from sound2sight.pipeline import export_bundle

    print(f"wrote {export_bundle(args.run, args.out)}")
    return 0


def cmd_demo(args) -> int:
    from sound2sight.config import load_config
    from sound2sight.pipeline import Sound2Sight, save_result
    from sound2sight.synthetic import make_demo_corpus
    from sound2sight.workflow import train_all

    run = Path(args.run)
    t0 = time.perf_counter()
    data = run / "demo-data"
    make_demo_corpus(data, seed=args.seed)
    overrides = [
        f"data.audio_root={data / 'audio'}",
        f"data.art_root={data / 'art'}",
        f"seed={args.seed}",
        *(args.set or []),
    ]
    cfg = load_config(args.config or REPO_CONFIGS / "demo.yaml", overrides=overrides)
    if args.device:
        cfg.device = args.device
    train_all(cfg, run)
    pipe = Sound2Sight.from_run(run)
    painted = run / "painted"
    for emotion in ("angry", "happy", "sad"):
        voice = sorted((data / "audio" / emotion).glob("*.wav"))[-1]
        result = pipe(voice, n_images=4, seed=args.seed)
        save_result(result, painted, name=voice.stem)
        print(f"{voice.name}: heard {result.emotion} ({result.probabilities[result.emotion]:.2f})")
    from sound2sight.report import write_report

    write_report(run)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"report:  {(run / 'report.html').resolve()}")
    print(f"painted: {painted.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sound2sight", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("demo", help="generate the demo corpus, train every stage, paint, report")
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--config", help="default: configs/demo.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("demo-data", help="write the synthetic demo corpus")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_demo_data)

    p = sub.add_parser("prepare", help="build a manifest (+ feature cache) and print counts")
    p.add_argument("what", choices=["audio", "art"])
    _add_config_args(p)
    p.set_defaults(fn=cmd_prepare)

    p = sub.add_parser("train", help="train one stage, or all of them")
    p.add_argument("stage", choices=["classifier", "align", "gan", "all"])
    p.add_argument("--force", action="store_true", help="(all) retrain stages already done")
    _add_config_args(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("tune", help="Optuna search over the classifier")
    _add_config_args(p)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--storage", help="Optuna storage URL (default sqlite in the run)")
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser("evaluate", help="metrics of a trained stage")
    p.add_argument("--stage", choices=["classifier", "align", "gan"], required=True)
    _add_config_args(p)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("paint", help="paint the emotion of one recording")
    p.add_argument("voice")
    p.add_argument("--run", required=True, help="run directory or exported bundle")
    p.add_argument("-n", type=int, default=4, help="images to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", default="painted")
    p.add_argument("--device")
    p.set_defaults(fn=cmd_paint)

    p = sub.add_parser("report", help="write report.html for a run")
    p.add_argument("run")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("serve", help="web page with upload and microphone")
    p.add_argument("--run", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("export", help="export a run as a small self-contained bundle")
    p.add_argument("--run", required=True)
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(fn=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads spin by default, which starves other work on a small shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from sound2sight.audio import AudioError
    from sound2sight.config import ConfigError

    try:
        return args.fn(args)
    except (ConfigError, AudioError, FileNotFoundError, ValueError) as exc:
        print(f"sound2sight: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sound2sight: interrupted (checkpoints are kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
