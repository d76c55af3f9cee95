"""doctor.html: what `tailor doctor` found, as one self-contained page (no network).

Duplicates are shown side by side, each example as its modality shows it in the run report
(`Modality.report_example`: a thumbnail, a playable clip, or the text), so a person can judge
a flag at a glance; doctor.json stays the complete, machine-readable record.
"""

from __future__ import annotations

from html import escape
from typing import Any

#: Examples shown per section (doctor.json holds them all).
SHOWN = 120

STYLE = """
body{font-family:system-ui,"Noto Sans CJK JP","IPAexGothic",sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}.group{display:flex;gap:.8rem;flex-wrap:wrap;margin:.6rem 0;
padding:.5rem;border:1px solid #eee;border-radius:6px}.card{width:190px;font-size:.8rem;
overflow-wrap:anywhere}.card img{max-width:180px;max-height:180px;display:block}
.card audio{width:180px}.text{white-space:pre-wrap;max-height:9em;overflow:auto;
background:#f7f7f7;padding:.3rem}.warn{color:#a40}.muted{color:#777}
"""


def render(doc: dict[str, Any]) -> str:
    """The page for a doctor.json document."""
    from modeltailor.modalities import get_modality

    modality = get_modality(doc["modality"])
    show = _Shower(modality)
    counts = doc["counts"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>tailor doctor: {escape(doc['source'])}</title><style>{STYLE}</style></head>",
        f"<body><h1>tailor doctor: {escape(doc['source'])}</h1>",
        f"<p class='muted'>{counts['items']} {escape(modality.noun)}, "
        f"{escape(doc['backbone'])} embeddings. Nothing in the data was moved or deleted; "
        "<code>exclude.txt</code> lists the suggested removals.</p>",
        _table([(k.replace("_", " "), v) for k, v in counts.items()]),
        "<h2>Class balance</h2>",
        _table(list(doc["class_balance"]["counts"].items())),
        _balance_notes(doc["class_balance"]),
    ]
    for key, title in (
        ("exact_duplicates", "Exact duplicates"),
        ("near_duplicates", "Near duplicates"),
    ):
        groups = doc[key]
        parts.append(f"<h2>{title} ({len(groups)} groups)</h2>")
        for group in groups[:SHOWN]:
            parts.append(_group(group, show))
    leaking = doc["leakage"]["groups"]
    parts.append(f"<h2>Leakage across splits ({len(leaking)} groups)</h2>")
    parts.append(f"<p class='muted'>{escape(doc['leakage']['split'])}</p>")
    issues = doc["label_issues"]
    items = issues.get("items", [])
    parts.append(f"<h2>Likely label errors ({len(items)})</h2>")
    parts.append(f"<p class='muted'>{escape(str(issues.get('method', '')))}</p>")
    for entry in items[:SHOWN]:
        note = (
            f"labelled <b>{escape(entry['label'])}</b>; the probe says "
            f"<b>{escape(entry['suggested_label'])}</b> "
            f"(p={entry.get('suggested_probability', 0):.2f})"
        )
        parts.append(f"<div class='group'>{show(entry, note)}</div>")
    outliers = doc["outliers"]["items"]
    parts.append(f"<h2>Outliers ({len(outliers)}), for review only</h2><div class='group'>")
    parts += [show(o, f"distance {o['distance']:.3f}") for o in outliers[:SHOWN]]
    parts.append("</div>")
    parts.append(f"<h2>Unreadable ({len(doc['unreadable'])})</h2>")
    parts.append(_table([(u["item"], u["reason"]) for u in doc["unreadable"][:SHOWN]]))
    parts.append("</body></html>")
    return "\n".join(parts)


class _Shower:
    """One example as a card: its picture, clip or text, its label and a note."""

    def __init__(self, modality: Any) -> None:
        self.modality = modality

    def __call__(self, entry: dict[str, Any], note: str = "") -> str:
        kind, uri = self._example(entry)
        if kind == "thumbnail" and uri:
            body = f"<img src='{uri}' alt=''>"
        elif kind == "clip" and uri:
            body = f"<audio controls src='{uri}'></audio>"
        else:
            body = f"<div class='text'>{escape(entry.get('text') or '')}</div>"
        split = f" · {escape(entry['split'])}" if entry.get("split") else ""
        return (
            f"<div class='card'>{body}<div><b>{escape(entry['label'])}</b>{split}</div>"
            f"<div class='muted'>{escape(entry['item'])}</div><div>{note}</div></div>"
        )

    def _example(self, entry: dict[str, Any]) -> tuple[str, str | None]:
        if entry.get("text") is not None:
            return "text", None
        try:
            return self.modality.report_example(entry["path"])
        except Exception:  # noqa: BLE001 - a file gone since: show its name only
            return "text", None


def _group(group: dict[str, Any], show: _Shower) -> str:
    notes = []
    if group.get("conflicting_labels"):
        notes.append(
            "<span class='warn'>labels disagree: " + escape(", ".join(group["labels"])) + "</span>"
        )
    if len(group.get("splits", [])) > 1:
        notes.append(
            "<span class='warn'>spans " + escape(" and ".join(group["splits"])) + "</span>"
        )
    if group.get("similarity"):
        sims = ", ".join(f"{k} {v:.3f}" for k, v in group["similarity"].items())
        notes.append(f"<span class='muted'>similarity {escape(sims)}</span>")
    keep = group.get("keep")
    cards = [
        show(m, "kept" if keep and m["item"] == keep else ("suggested removal" if keep else ""))
        for m in group["items"]
    ]
    return f"<div><div>{' · '.join(notes)}</div><div class='group'>{''.join(cards)}</div></div>"


def _balance_notes(balance: dict[str, Any]) -> str:
    notes = [f"largest / smallest class: {balance.get('imbalance_ratio')}"]
    for key in ("empty", "too_small_to_train", "too_small_to_split"):
        if balance.get(key):
            names = escape(", ".join(balance[key]))
            notes.append(f"<span class='warn'>{key.replace('_', ' ')}: {names}</span>")
    return "<p>" + "; ".join(notes) + "</p>"


def _table(rows: list[tuple[Any, Any]]) -> str:
    cells = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"
