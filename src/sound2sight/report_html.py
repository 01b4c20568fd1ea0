"""HTML pieces of ``report.html``: rounding, tables people can scan, figures, the page shell.

>>> sig3(0.8555555555555555), sig3(261.68765), sig3(12345.6), sig3(3), sig3(None)
('0.856', '262', '12,346', '3', '–')
>>> "<td>0.333</td>" in kv_table({"accuracy": 1 / 3})
True
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

__all__ = [
    "sig3",
    "kv_table",
    "metrics_html",
    "figure",
    "raw_json",
    "page",
]

MAX_DEPTH = 2  # nested dicts deeper than this are shown as dotted keys in one table


def sig3(v: object) -> str:
    """A number rounded to 3 significant figures (thousands separated, no exponent above 1)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return html.escape(str(v))


def _is_scalar(v: object) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _short_list(v: object) -> bool:
    return isinstance(v, list) and len(v) <= 12 and all(_is_scalar(x) for x in v)


def _cell(v: object) -> str:
    if _short_list(v):
        return ", ".join(sig3(x) for x in v) or "–"
    if isinstance(v, list):
        return f"<span class='muted'>{len(v)} entries (raw JSON below)</span>"
    if isinstance(v, dict):
        return html.escape(", ".join(f"{k} {sig3(x)}" for k, x in _flat(v)))
    return sig3(v)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            rows.extend(_flat(v, f"{prefix}{k}."))
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def kv_table(d: dict, *, flatten: bool = True) -> str:
    """A two-column ``name | value`` table (nested dicts as dotted names)."""
    rows = _flat(d) if flatten else list(d.items())
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


def _matrix(d: dict) -> list[str] | None:
    """Column names when ``d`` maps names to dicts of scalars with shared keys (a per-class table)."""
    if len(d) < 2 or not all(isinstance(v, dict) and v for v in d.values()):
        return None
    cols: list[str] = []
    for v in d.values():
        for k, x in _flat(v):
            if not _is_scalar(x):
                return None
            if k not in cols:
                cols.append(k)
    return cols if len(cols) <= 10 else None


def matrix_table(d: dict, cols: list[str]) -> str:
    """Rows = the keys of ``d``, columns = ``cols`` (dotted keys of the inner dicts)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for name, inner in d.items():
        flat = dict(_flat(inner))
        cells = "".join(f"<td>{sig3(flat.get(c))}</td>" for c in cols)
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{cells}</tr>")
    return f"<table class='matrix'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def row_table(d: dict) -> str:
    """A small dict of scalars as one row: names as the header."""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in d)
    cells = "".join(f"<td>{_cell(v)}</td>" for v in d.values())
    return f"<table class='matrix'><tr>{head}</tr><tr>{cells}</tr></table>"


def metrics_html(d: dict, *, depth: int = 0, skip: tuple[str, ...] = ()) -> str:
    """A metrics dict as tables: scalars first, then one titled block per nested dict
    (per-class dicts as matrices, small flat dicts as one row), blocks side by side."""
    scalars = {k: v for k, v in d.items() if k not in skip and not isinstance(v, dict)}
    parts = [kv_table(scalars, flatten=False)] if scalars else []
    blocks = []
    for k, v in d.items():
        if k in skip or not isinstance(v, dict) or not v:
            continue
        title = f"<h{4 + min(depth, 2)}>{html.escape(str(k))}</h{4 + min(depth, 2)}>"
        cols = _matrix(v)
        if cols is not None:
            inner = matrix_table(v, cols)
        elif len(v) <= 8 and all(_is_scalar(x) or _short_list(x) for x in v.values()):
            inner = row_table(v)
        elif depth >= MAX_DEPTH:
            inner = kv_table(v)
        else:
            inner = metrics_html(v, depth=depth + 1)
        blocks.append(f"<div class='block'>{title}{inner}</div>")
    if blocks:
        parts.append(f"<div class='blocks'>{''.join(blocks)}</div>")
    return "".join(parts)


def figure(path: Path, caption: str, *, width: int | None = None) -> str:
    """An inlined PNG with a caption."""
    data = base64.b64encode(path.read_bytes()).decode()
    w = f" style='width:{width}px'" if width else ""
    cap = html.escape(caption)
    return (
        f"<figure><img src='data:image/png;base64,{data}' alt='{cap}'{w}>"
        f"<figcaption>{cap}</figcaption></figure>"
    )


def raw_json(name: str, data: object) -> str:
    """The raw JSON, collapsed."""
    text = html.escape(json.dumps(data, indent=1, default=str))
    return f"<details><summary>raw {html.escape(name)}</summary><pre>{text}</pre></details>"


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.1em}h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.8em}
h4,h5,h6{margin:.8em 0 .3em}.muted{color:#5c6270}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:14px}
td,th{border-bottom:1px solid #e4e4e8;padding:3px 10px;text-align:left;vertical-align:top}
table.kv th{font-weight:normal;color:#444}td{font-variant-numeric:tabular-nums}
table.matrix td{text-align:right}table.headline td,table.headline th{padding:6px 12px}
table.headline{font-size:15px}table.headline td.value{font-weight:600;text-align:right}
.met{color:#1a7f37;font-weight:600}.missed{color:#b42318;font-weight:600}.info{color:#5c6270}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#5c6270}.blocks{display:flex;flex-wrap:wrap;gap:0 2em}
.block{max-width:100%;overflow-x:auto}
.trained{font-size:15px;background:#f6f7fb;padding:.6em 1em;border-radius:6px}
details{margin:.4em 0 1em}summary{cursor:pointer;color:#334}
pre{font-size:12px;background:#f6f7fb;padding:.6em;overflow:auto;max-height:30em}
"""


def page(title: str, body: str) -> str:
    """The whole self-contained document."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )
