"""Figures for people: the paint contact sheet and the run's ``report.html``.

The report is one self-contained HTML file (figures inlined as base64 PNG), built from
what the stages left in the run directory: every ``metrics.json``, the confusion
matrix, training curves, the embedding map, sample grids and retrieval examples.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

from sound2sight.io import atomic_write_text
from sound2sight.labels import EMOTIONS

__all__ = ["contact_sheet", "write_report"]

log = logging.getLogger(__name__)

COLOURS = {"angry": "#d62728", "happy": "#f2b701", "sad": "#1f77b4"}


def contact_sheet(result, path: str | Path) -> Path:
    """Generated images, nearest real artworks and an emotion bar chart in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sound2sight.io import atomic_write_bytes

    n_gen, n_nb = len(result.images), len(result.neighbours)
    cols = max(n_gen, n_nb, 1) + 1
    fig, axes = plt.subplots(2, cols, figsize=(2.0 * cols, 4.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    bar = axes[0, 0]
    bar.axis("on")
    probs = [result.probabilities[e] for e in EMOTIONS]
    bar.barh(list(EMOTIONS), probs, color=[COLOURS[e] for e in EMOTIONS])
    bar.set_xlim(0, 1)
    bar.set_title(f"heard: {result.emotion}", fontsize=10)
    bar.tick_params(labelsize=8)
    axes[1, 0].text(0.5, 0.5, "nearest real\nartworks →", ha="center", va="center", fontsize=9)
    for i, img in enumerate(result.images):
        axes[0, i + 1].imshow(img)
        axes[0, i + 1].set_title(f"painted #{i}", fontsize=8)
    for i, nb in enumerate(result.neighbours[: cols - 1]):
        axes[1, i + 1].imshow(nb.thumbnail)
        axes[1, i + 1].set_title(
            f"{nb.label} {nb.score:.2f}", fontsize=8, color=COLOURS.get(nb.label, "k")
        )
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _img_tag(path: Path, *, width: int | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    w = f' width="{width}"' if width else ""
    return f'<figure><img src="data:image/png;base64,{data}"{w} alt="{html.escape(path.name)}"><figcaption>{html.escape(path.name)}</figcaption></figure>'


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and len(json.dumps(v, default=str)) > 80:
            rows.extend(_flatten(v, key + "."))
        elif isinstance(v, list) and len(v) > 12:
            rows.append((key, f"[{len(v)} values]"))
        else:
            rows.append((key, v))
    return rows


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v, default=str))
    return html.escape(str(v))


def _metrics_table(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return f"<p>could not read {html.escape(str(path))}: {html.escape(str(exc))}</p>"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in _flatten(data)
    )
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


SECTIONS = [
    ("data", "Data", "Manifests: counts per label × split, drops, duplicates, failures."),
    (
        "classifier",
        "Emotion classifier",
        "Held-out speakers: accuracy, macro-F1, confusion matrix, curves.",
    ),
    ("tune", "Tuning", "Optuna study."),
    ("image", "Image features", "EfficientNet-Lite0 features of the artworks."),
    ("align", "Shared audio–image space", "Cross-modal retrieval and the embedding map."),
    ("gan", "Conditional GAN", "Emotion consistency, FD-EffNet, KID, diversity; sample grids."),
]


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from whatever the stages produced; return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sound2sight report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "figure{display:inline-block;margin:.5em}figcaption{font-size:12px;color:#666}img{max-width:100%}"
        "h2{border-bottom:2px solid #eee;padding-bottom:.2em}</style></head><body>",
        f"<h1>sound2sight run report</h1><p>Run directory: <code>{html.escape(str(run_dir.resolve()))}</code></p>",
    ]
    timings = run_dir / "timings.json"
    if timings.is_file():
        parts.append("<h2>Wall time per stage (s)</h2>" + _metrics_table(timings))
    for folder, title, blurb in SECTIONS:
        d = run_dir / folder
        if not d.is_dir():
            continue
        parts.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(blurb)}</p>")
        for mj in sorted(d.glob("*.json")):
            if mj.stat().st_size < 200_000:
                parts.append(f"<h3>{html.escape(mj.name)}</h3>" + _metrics_table(mj))
        pngs = sorted(d.glob("*.png"))
        samples = sorted((d / "samples").glob("*.png")) if (d / "samples").is_dir() else []
        if samples:
            pngs.append(samples[-1])
        parts.extend(_img_tag(p, width=520) for p in pngs)
    painted = run_dir / "painted"
    if painted.is_dir():
        parts.append("<h2>Painted examples (retrieval examples below each)</h2>")
        parts.extend(_img_tag(p) for p in sorted(painted.glob("*_sheet.png")))
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        parts.append(
            f"<h2>Resolved config</h2><pre>{html.escape(cfg.read_text(encoding='utf-8'))}</pre>"
        )
    parts.append("</body></html>")
    out = atomic_write_text(run_dir / "report.html", "\n".join(parts))
    log.info("wrote %s", out)
    return out
