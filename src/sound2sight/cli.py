"""``sound2sight`` command line: thin verbs over the library.

Every verb that trains or evaluates takes ``--run DIR``; its config is the run's saved
``config.yaml`` (if any), then ``--config FILE``, then ``--set a.b=v`` overrides.
Arguments are checked before anything heavy is imported, so a bad path or option
fails at once (exit status 2); torch is imported only once there is work to do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("sound2sight.cli")

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DESCRIPTION = """Hear the emotion in a voice, paint it, and show the artworks nearest to it.

Every verb that trains or evaluates takes --run DIR.  Its configuration is the run's
saved config.yaml (if any), then --config FILE, then --set KEY=VALUE overrides."""
EPILOG = "Run 'sound2sight VERB --help' for the options of one verb."


# ---- argument types: checked while parsing, before torch is imported
def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such run directory")
    return path


def device(text: str) -> str:
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda, cuda:N or mps")
    return text


def key_value(text: str) -> str:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. train.lr=1e-3")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def rounded(obj, digits: int = 4):
    """``obj`` with every float rounded to ``digits`` significant figures (for printing)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


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


def _add_config_args(p: argparse.ArgumentParser, *, run_must_exist: bool = False) -> None:
    p.add_argument(
        "--run",
        required=True,
        type=existing_dir if run_must_exist else Path,
        help="run directory (holds config.yaml, one folder per stage, report.html)",
    )
    p.add_argument(
        "--config", type=existing_file, help="YAML holding only what differs from the defaults"
    )
    p.add_argument(
        "--set",
        action="append",
        type=key_value,
        metavar="KEY=VALUE",
        help="override one config field, e.g. train.lr=1e-3 (repeatable)",
    )
    p.add_argument("--device", type=device, help="cpu, cuda, cuda:N or mps (default: config)")


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
        print("wall time per stage (s):")
        for stage, seconds in times.items():
            print(
                f"  {stage:<12} {seconds:8.1f}"
                if isinstance(seconds, float)
                else f"  {stage:<12} {seconds}"
            )
        print(f"report: {run / 'report.html'}")
        return 0
    names = {"classifier": ["classifier"], "align": ["image", "align"], "gan": ["gan", "gan-eval"]}
    for name in names.get(args.stage, [args.stage]):
        run_stage(name, cfg, run, force=True)
    return 0


def cmd_tune(args) -> int:
    from sound2sight.voice.tune import tune

    cfg = _config(args)
    best = tune(cfg, Path(args.run), n_trials=args.trials, storage=args.storage)
    print(json.dumps(rounded(best), indent=2, default=str))
    return 0


def cmd_evaluate(args) -> int:
    from sound2sight.workflow import run_stage

    cfg = _config(args)
    stage = {"gan": "gan-eval", "classifier": "classifier", "align": "align"}[args.stage]
    if stage != "gan-eval":
        path = Path(args.run) / stage / "metrics.json"
        if not path.is_file():
            print(f"{path}: train the {stage} stage first", file=sys.stderr)
            return 1
        print(json.dumps(rounded(json.loads(path.read_text(encoding="utf-8"))), indent=2))
        return 0
    metrics = run_stage(stage, cfg, Path(args.run), force=True)
    print(json.dumps(rounded(metrics), indent=2, default=str))
    return 0


def cmd_paint(args) -> int:
    from sound2sight.pipeline import Sound2Sight, save_result

    t0 = time.perf_counter()
    pipe = Sound2Sight.from_run(args.run, device=args.device or "cpu")
    t1 = time.perf_counter()
    if args.speaker_clips:
        stats = pipe.calibrate_to_speaker(args.speaker_clips)
        print(
            f"calibrated to one speaker: {stats.n_clips} windows of "
            f"{len(args.speaker_clips)} files in {time.perf_counter() - t1:.1f} s"
        )
        t1 = time.perf_counter()
    result = pipe(args.voice, n_images=args.n, seed=args.seed)
    t2 = time.perf_counter()
    out = save_result(result, args.out, name=Path(args.voice).stem)
    heard = result.emotion
    if result.uncertain:
        heard = f"uncertain between {result.uncertain[0]} and {result.uncertain[1]}"
    probs = " ".join(f"{k} {v:.2f}" for k, v in result.probabilities.items())
    print(f"{args.voice}: {heard}  ({probs})")
    if result.painted_emotions:
        print(f"paintings read as (image-emotion probe): {', '.join(result.painted_emotions)}")
    for part, text in result.provenance.items():
        print(f"  {part}: {text}")
    print(
        f"loading the model took {t1 - t0:.1f} s; painting took {(t2 - t1) * 1000:.0f} ms "
        f"(the first call, cold; the pipeline stages alone: "
        f"{result.timings_ms.get('total', 0):.0f} ms)"
    )
    print(f"wrote {out}")
    return 0


def cmd_report(args) -> int:
    from sound2sight.report import write_report

    print(f"wrote {write_report(Path(args.run))}")
    return 0


def cmd_serve(args) -> int:
    from sound2sight.web.serving import serve

    serve(
        args.run,
        host=args.host,
        port=args.port,
        threads=args.threads,
        workers=args.workers,
        calibration=args.calibration,
    )
    return 0


def cmd_export(args) -> int:
    from sound2sight.pipeline import export_bundle

    print(f"wrote {export_bundle(args.run, args.out)}")
    return 0


def cmd_demo(args) -> int:
    import csv

    from sound2sight.config import load_config
    from sound2sight.pipeline import Sound2Sight, save_result
    from sound2sight.synthetic import make_demo_corpus
    from sound2sight.workflow import train_all

    run = Path(args.run)
    t0 = time.perf_counter()
    data = run / "demo-data"
    make_demo_corpus(data, seed=args.seed)  # the procedural paintings (and voices, unused)
    voices = Path(__file__).resolve().parent / "examples" / "voices"  # 23 CREMA-D clips
    overrides = [
        f"data.audio_root={voices}",
        f"data.art_root={data / 'art'}",
        f"seed={args.seed}",
        *(args.set or []),
    ]
    cfg = load_config(args.config or REPO_CONFIGS / "demo.yaml", overrides=overrides)
    if args.device:
        cfg.device = args.device
    train_all(cfg, run)
    pipe = Sound2Sight.from_run(run)
    for part, text in pipe.provenance.items():
        print(f"{part}: {text}")
    painted = run / "painted"
    with open(run / "data" / "audio_manifest.csv", newline="", encoding="utf-8") as fh:
        test = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    for emotion in ("angry", "happy", "sad"):  # real voices of the run's test speakers
        rows = [r for r in test if r["label"] == emotion][:1]
        for r in rows:
            voice = Path(r["path"])
            result = pipe(voice, n_images=4, seed=args.seed)
            save_result(result, painted, name=voice.stem)
            said = (
                f"uncertain between {result.uncertain[0]} and {result.uncertain[1]}"
                if result.uncertain
                else f"{result.emotion} ({result.probabilities[result.emotion]:.2f})"
            )
            print(f"{voice.name} (acted {emotion}): heard {said}")
    from sound2sight.report import write_report

    write_report(run)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"report:  {(run / 'report.html').resolve()}")
    print(f"painted: {painted.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sound2sight import __version__

    parser = argparse.ArgumentParser(
        prog="sound2sight",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("demo", help="generate the demo corpus, train every stage, paint, report")
    p.add_argument("--run", type=Path, default=Path("runs/demo"), help="run directory to create")
    p.add_argument("--config", type=existing_file, help="YAML config (default: configs/demo.yaml)")
    p.add_argument(
        "--set", action="append", type=key_value, metavar="KEY=VALUE", help="override a field"
    )
    p.add_argument("--device", type=device, help="cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seeds the corpus, training and painting")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("demo-data", help="write the synthetic demo corpus")
    p.add_argument("out", type=Path, help="folder to write audio/ and art/ into")
    p.add_argument("--seed", type=int, default=0, help="seeds the procedural voices and paintings")
    p.set_defaults(fn=cmd_demo_data)

    p = sub.add_parser("prepare", help="build a manifest (+ feature cache) and print counts")
    p.add_argument("what", choices=["audio", "art"], help="which corpus to prepare")
    _add_config_args(p)
    p.set_defaults(fn=cmd_prepare)

    p = sub.add_parser("train", help="train one stage, or all of them")
    p.add_argument("stage", choices=["classifier", "align", "gan", "all"], help="what to train")
    p.add_argument("--force", action="store_true", help="(all) retrain stages already done")
    _add_config_args(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("tune", help="Optuna search over the classifier")
    _add_config_args(p)
    p.add_argument("--trials", type=positive_int, default=20, help="trials to run (default 20)")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite file in the run)")
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser("evaluate", help="metrics of a trained stage")
    p.add_argument(
        "--stage", choices=["classifier", "align", "gan"], required=True, help="which stage"
    )
    _add_config_args(p, run_must_exist=True)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("paint", help="paint the emotion of one recording")
    p.add_argument("voice", type=existing_file, help="audio file (WAV, FLAC, OGG, MP3)")
    p.add_argument(
        "--run", required=True, type=existing_dir, help="run directory or exported bundle"
    )
    p.add_argument("-n", type=int, default=4, help="paintings to generate (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seeds the painting noise")
    p.add_argument(
        "-o", "--out", type=Path, default=Path("painted"), help="output folder (default painted/)"
    )
    p.add_argument(
        "--speaker-clips",
        nargs="+",
        type=existing_file,
        metavar="WAV",
        help="other recordings of the same speaker (any emotions) to calibrate to: only for a "
        "voice model trained with classifier.speaker_norm=true",
    )
    p.add_argument("--device", type=device, help="cpu, cuda, cuda:N or mps (default cpu)")
    p.set_defaults(fn=cmd_paint)

    p = sub.add_parser("report", help="write report.html for a run")
    p.add_argument("run", type=existing_dir, help="run directory")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("serve", help="web page with upload and microphone (FastAPI + uvicorn)")
    p.add_argument(
        "--run", required=True, type=existing_dir, help="run directory or exported bundle"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="pipeline calls at once (model threads; default 1 = serialised)",
    )
    p.add_argument("--threads", type=positive_int, help="torch threads (default: CPU cores)")
    p.add_argument(
        "--calibration",
        choices=["auto", "opt-in", "off"],
        default="opt-in",
        help="calibrate to a browser session's voice from its third recording: always, when "
        "the page's checkbox asks (default), or never (speaker-normalised voice models)",
    )
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("export", help="export a run as a small self-contained bundle")
    p.add_argument("--run", required=True, type=existing_dir, help="trained run directory")
    p.add_argument("-o", "--out", required=True, type=Path, help="bundle folder to write")
    p.set_defaults(fn=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads spin by default, which starves other work on a small shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)  # bad paths and options exit 2 here, torch not loaded
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as exc:  # includes AudioError and ConfigError
        print(f"sound2sight: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sound2sight: interrupted (checkpoints are kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
