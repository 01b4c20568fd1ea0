"""Figures for people: the paint contact sheet and the run's ``report.html``.

The report is one self-contained HTML file (figures inlined as base64 PNG), built from
what the stages left in the run directory.  Its first screen is for a person: what was
trained on what, the headline figures against their goals, the confusion matrix, the
embedding map and the painting grids.  Per-stage details follow as rounded tables
(3 significant figures), with each file's raw JSON collapsed under it.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

from sound2sight.io import atomic_write_text
from sound2sight.labels import EMOTIONS
from sound2sight.report_html import figure, metrics_html, page, raw_json, sig3

__all__ = ["contact_sheet", "write_report"]

log = logging.getLogger(__name__)

COLOURS = {"angry": "#d62728", "happy": "#f2b701", "sad": "#1f77b4"}


def contact_sheet(result, path: str | Path) -> Path:
    """Generated images, nearest artworks and an emotion bar chart in one PNG."""
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
    axes[1, 0].text(0.5, 0.5, "nearest\nartworks →", ha="center", va="center", fontsize=9)
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


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("report: skipping %s (%s)", path.name, exc)
        return {}


def _get(d: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


# The project's goals on real data (BENCHMARKS.md defines each figure and its protocol).
GOALS = {"accuracy": 0.85, "macro_f1": 0.83, "map": 0.80, "consistency": 0.55}


def _row(name: str, value, goal: str, met: bool | None, note: str) -> str:
    status = {True: "<span class='met'>met</span>", False: "<span class='missed'>missed</span>"}
    return (
        f"<tr><th>{html.escape(name)}</th><td class='value'>{sig3(value)}</td>"
        f"<td>{html.escape(goal)}</td><td>{status.get(met, '<span class=info>–</span>')}</td>"
        f"<td class='muted'>{html.escape(note)}</td></tr>"
    )


def headline_rows(run_dir: Path) -> list[str]:
    """One table row per headline figure that the run has: value, goal, met or missed."""
    clf = (
        _load(run_dir / "classifier" / "metrics.json") if (run_dir / "classifier").is_dir() else {}
    )
    align = _load(run_dir / "align" / "metrics.json") if (run_dir / "align").is_dir() else {}
    gan = _load(run_dir / "gan" / "metrics.json") if (run_dir / "gan").is_dir() else {}
    rows = []
    acc, f1 = _get(clf, "test.accuracy"), _get(clf, "test.macro_f1")
    n_test = _get(clf, "test.n")
    held_out = f"{n_test} clips of held-out speakers" if n_test else "held-out speakers"
    if acc is not None:
        goal = GOALS["accuracy"]
        rows.append(_row("emotion accuracy", acc, f"≥ {goal}", acc >= goal, held_out))
    if f1 is not None:
        goal = GOALS["macro_f1"]
        rows.append(_row("emotion macro-F1", f1, f"≥ {goal}", f1 >= goal, "mean of per-class F1"))
    top1 = _get(align, "audio_to_image.gallery_all.top1")
    same = _get(align, "classifier_on_same_clips.accuracy")
    if top1 is not None:
        goal, met = ("≥ classifier − 0.01", top1 >= same - 0.01) if same is not None else ("", None)
        note = "voice → artworks: the nearest artwork has the voice's emotion"
        rows.append(_row("retrieval top-1", top1, goal, met, note))
    m_ap = _get(align, "audio_to_image.gallery_all.mAP")
    if m_ap is not None:
        goal = GOALS["map"]
        note = "mean average precision of the artworks ranked for each voice"
        rows.append(_row("retrieval mAP", m_ap, f"≥ {goal}", m_ap >= goal, note))
    held = "independent.consistency_heldout.probe"
    cons = _get(gan, f"{held}.generated.balanced")
    if cons is not None:  # judged by EfficientNet-Lite2 and paintings the GAN never saw
        ceiling = _get(gan, f"{held}.real_ceiling.balanced")
        goal = GOALS["consistency"]
        note = (
            "a probe on held-out paintings (EfficientNet-Lite2) names each painting's emotion; "
            f"real paintings score {sig3(ceiling)} on it"
        )
        rows.append(_row("emotion consistency", cons, f"≥ {goal}", cons >= goal, note))
    elif (cons := _get(gan, "consistency.generated.k1.balanced")) is not None:  # older runs
        ceiling = _get(gan, "consistency.real_heldout.k1.balanced")
        note = f"held-out paintings (not generated) score {sig3(ceiling)}: the real-image ceiling"
        rows.append(_row("emotion consistency (Lite0 k-NN)", cons, "", None, note))
    space = "independent.fd" if _get(gan, "independent.fd") else "fd_effnet"
    fd = _get(gan, f"{space}.generated")
    if fd is not None:
        real = _get(gan, f"{space}.real_heldout")
        net = "Lite2" if space == "independent.fd" else "Lite0"
        note = f"lower is better; held-out paintings (not generated): {sig3(real)}: the real-image ceiling"
        rows.append(_row(f"Fréchet distance (EfficientNet-{net})", fd, "", None, note))
    reach = _get(gan, "emotion_vs_noise.ratio")
    if reach is not None:
        note = "same noise, another emotion vs same emotion, another noise (pixel change)"
        rows.append(_row("emotion reaches the picture", reach, "≥ 0.5", reach >= 0.5, note))
    return rows


def trained_on(run_dir: Path) -> str:
    """A few sentences: what each stage was trained on, from the prepare files and config."""
    audio = _load(run_dir / "data" / "audio_prepare.json")
    art = _load(run_dir / "data" / "art_prepare.json")
    clf = (
        _load(run_dir / "classifier" / "metrics.json") if (run_dir / "classifier").is_dir() else {}
    )
    gan = _load(run_dir / "gan" / "metrics.json") if (run_dir / "gan").is_dir() else {}
    lines = []
    if audio:
        corpora = ", ".join(f"{k} {sig3(v)}" for k, v in (audio.get("corpora") or {}).items())
        labels = ", ".join(f"{k} {sig3(v)}" for k, v in (audio.get("labels") or {}).items())
        split = audio.get("speakers_per_split") or {}
        lines.append(
            f"<b>Voices</b>: {sig3(audio.get('n_items'))} clips from {sig3(audio.get('speakers'))} "
            f"speakers ({html.escape(corpora)}; {html.escape(labels)}); split by speaker: "
            f"{sig3(split.get('train'))} train, {sig3(split.get('val'))} validation, "
            f"{sig3(split.get('test'))} test speakers."
        )
    if clf.get("pretrained"):  # a shipped head, installed rather than trained here
        card = clf["pretrained"]
        lines.append(
            f"<b>Emotion classifier</b>: the shipped voice model "
            f"{html.escape(str(card.get('name', '?')))} (not trained in this run)."
        )
    elif clf.get("ensemble"):  # classifier.ensemble: several heads, one per seed
        lines.append(
            f"<b>Emotion classifier</b>: {sig3(clf['ensemble'])} "
            f"{html.escape(str(clf.get('arch', '?')))} heads (one per seed, their answers "
            f"averaged), {sig3(clf.get('epochs_run'))} epochs in all on "
            f"{sig3(clf.get('train_clips'))} clips."
        )
    elif clf:
        lines.append(
            f"<b>Emotion classifier</b>: {html.escape(str(clf.get('arch', '?')))}, "
            f"{sig3(clf.get('epochs_run'))} epochs on {sig3(clf.get('train_clips'))} clips "
            f"(best epoch {sig3(clf.get('best_epoch'))})."
        )
    if art:
        sources = ", ".join(f"{k} {sig3(v)}" for k, v in (art.get("sources") or {}).items())
        labels = ", ".join(f"{k} {sig3(v)}" for k, v in (art.get("labels") or {}).items())
        lines.append(
            f"<b>Artworks</b>: {sig3(art.get('n_items'))} images ({html.escape(sources)}; "
            f"{html.escape(labels)})."
        )
    if gan:
        t = gan.get("training") or {}
        lines.append(
            f"<b>Painter (conditional GAN in the latent space of the pretrained TAEF2 "
            f"autoencoder)</b>: {sig3(t.get('steps'))} steps at "
            f"{sig3(gan.get('image_size'))}×{sig3(gan.get('image_size'))} px on "
            f"{html.escape(str(t.get('device', '?')))}, "
            f"{sig3(t.get('n_train_images'))} paintings each conditioned on its own point in "
            f"the shared space; a voice paints from {html.escape(str(gan.get('conditions', '?')))}."
        )
    roots = f"{audio.get('root', '')} {art.get('root', '')}"
    if "demo-data" in roots or "synthetic" in roots:
        lines.append(
            "<b>Note</b>: this run is on the synthetic demo corpus; its figures only show that "
            "the chain works."
        )
    prov = run_dir / "provenance.json"
    if prov.is_file():
        for part, text in _load(prov).items():
            lines.append(f"<b>{html.escape(str(part))}</b>: {html.escape(str(text))}")
    return "<div class='trained'>" + "<br>".join(lines or ["(no prepare files found)"]) + "</div>"


def first_figures(run_dir: Path) -> str:
    figs = []
    for rel, caption in [
        ("classifier/confusion.png", "confusion matrix (held-out speakers)"),
        ("align/embedding_map.png", "embedding map of the shared voice–image space"),
    ]:
        if (run_dir / rel).is_file():
            figs.append(figure(run_dir / rel, caption, width=320))
    for emotion in EMOTIONS:
        grid = run_dir / "gan" / f"grid_{emotion}.png"
        if grid.is_file():
            figs.append(figure(grid, f"painted for {emotion} voices", width=240))
    return f"<div class='figs'>{''.join(figs)}</div>" if figs else ""


SECTIONS = [
    ("data", "Data", "Manifests: counts per label × split, drops, duplicates, failures."),
    ("classifier", "Emotion classifier", "Held-out speakers: accuracy, macro-F1, recall."),
    ("tune", "Tuning", "Optuna study."),
    ("image", "Image features", "EfficientNet-Lite0 features of the artworks."),
    ("align", "Shared voice–image space", "Cross-modal retrieval, both directions."),
    ("gan", "Painter (conditional GAN)", "Emotion consistency, FD, KID, diversity."),
]
LONG_KEYS = ("history", "config", "trials")  # shown only in the raw JSON


def stage_details(run_dir: Path) -> list[str]:
    parts = []
    for folder, title, blurb in SECTIONS:
        d = run_dir / folder
        if not d.is_dir():
            continue
        parts.append(f"<h2>{html.escape(title)}</h2><p class='muted'>{html.escape(blurb)}</p>")
        for mj in sorted(d.glob("*.json")):
            if mj.stat().st_size > 500_000:
                continue
            data = _load(mj)
            if not isinstance(data, dict) or not data:
                continue
            parts.append(f"<h3>{html.escape(mj.name)}</h3>")
            parts.append(metrics_html(data, skip=LONG_KEYS) + raw_json(mj.name, data))
        shown = {"confusion.png", "embedding_map.png", *(f"grid_{e}.png" for e in EMOTIONS)}
        pngs = [p for p in sorted(d.glob("*.png")) if p.name not in shown]
        samples = sorted((d / "samples").glob("*.png")) if (d / "samples").is_dir() else []
        pngs += samples[-1:]
        if pngs:
            parts.append(
                "<div class='figs'>"
                + "".join(figure(p, p.name, width=520) for p in pngs)
                + "</div>"
            )
    return parts


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from whatever the stages produced; return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    rows = headline_rows(run_dir)
    parts = [
        f"<h1>sound2sight run: {html.escape(run_dir.resolve().name)}</h1>",
        f"<p class='muted'>{html.escape(str(run_dir.resolve()))}</p>",
        "<h2>What was trained on what</h2>",
        trained_on(run_dir),
        "<h2>Headline figures</h2>",
        (
            "<table class='headline'><tr><th>figure</th><th>value</th><th>goal</th>"
            f"<th></th><th>what it means</th></tr>{''.join(rows)}</table>"
            if rows
            else "<p>No stage has reported yet.</p>"
        ),
        first_figures(run_dir),
    ]
    painted = run_dir / "painted"
    sheets = sorted(painted.glob("*_sheet.png")) if painted.is_dir() else []
    if sheets:
        parts.append(
            "<h2>Painted examples</h2><p class='muted'>Each voice's paintings, with the "
            "artworks nearest it below.</p>"
        )
        parts.append("<div class='figs'>" + "".join(figure(p, p.stem) for p in sheets) + "</div>")
    parts.append("<h1 id='details'>Details per stage</h1>")
    timings = run_dir / "timings.json"
    if timings.is_file():
        parts.append("<h2>Wall time per stage (s)</h2>" + metrics_html(_load(timings)))
    parts.extend(stage_details(run_dir))
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        text = html.escape(cfg.read_text(encoding="utf-8"))
        parts.append(
            f"<h2>Configuration</h2><details><summary>resolved config.yaml</summary>"
            f"<pre>{text}</pre></details>"
        )
    body = "\n".join(parts)
    out = atomic_write_text(run_dir / "report.html", page("sound2sight report", body))
    log.info("wrote %s", out)
    return out
