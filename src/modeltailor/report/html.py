"""One self-contained HTML page: inline CSS, images as base64 data URIs, nothing fetched.

A Content-Security-Policy that allows only inline styles and data: images makes the promise
checkable: if anything external ever slipped in, the browser would refuse it and say so.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

THUMB_PX = 128


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(path: str | Path) -> str | None:
    """A small JPEG data URI of an image file; None when it is gone or not an image."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft(None, (2 * THUMB_PX, 2 * THUMB_PX))  # JPEGs decode at reduced size: fast
            im = ImageOps.exif_transpose(im)
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return data_uri(buf.getvalue(), "image/jpeg")


#: Mistaken clips are embedded for listening, cut to this many seconds (16 kHz, 16-bit).
CLIP_SECONDS = 5.0


def audio_clip(path: str | Path) -> str | None:
    """A short 16-kHz WAV data URI of an audio file; None when it is gone or unreadable."""
    import soundfile as sf

    from modeltailor.data.audio import AudioReadError, decode_audio

    try:
        wave = decode_audio(path, 16000)[: int(CLIP_SECONDS * 16000)]
    except AudioReadError:
        return None
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV", subtype="PCM_16")
    return data_uri(buf.getvalue(), "audio/wav")


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    env.filters["png"] = data_uri
    template = env.from_string(TEMPLATE)
    from modeltailor import __version__

    built = datetime.now(UTC).isoformat(timespec="seconds")
    return template.render(**context, version=__version__, built=built)


TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'">
<link rel="icon" href="data:,">
<title>Report: {{ name }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans",
         "Noto Sans CJK JP", "Hiragino Sans", "Yu Gothic", Meiryo, sans-serif;
         color: #222; background: #fafafa; margin: 0; line-height: 1.45; }
  main { max-width: 1120px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
  header h1 { margin: 0 0 .2rem; font-size: 1.5rem; word-break: break-all; }
  .sub { color: #555; margin: 0 0 .8rem; }
  nav { margin: .6rem 0 1rem; font-size: .9rem; }
  nav a { margin-right: .9rem; color: #3b6ea5; text-decoration: none; }
  section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px;
            padding: .8rem 1.2rem 1rem; margin: 1rem 0; }
  h2 { font-size: 1.15rem; margin: .2rem 0 .6rem; }
  h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
  table { border-collapse: collapse; font-size: .9rem; margin: .3rem 0; }
  th, td { border-bottom: 1px solid #eee; padding: .25rem .7rem; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  thead th { border-bottom: 2px solid #ccc; }
  td.snippet { text-align: left; max-width: 40rem; font-size: .85rem; }
  td.path { text-align: left; font-family: ui-monospace, monospace; font-size: .8rem;
            word-break: break-all; }
  img.fig { max-width: 100%; height: auto; display: block; margin: .4rem 0; }
  .note { padding: .6rem .9rem; border-radius: 5px; margin: .6rem 0; }
  .ok { background: #eef6ee; border-left: 4px solid #4f9a5a; }
  .warn { background: #fff4e0; border-left: 4px solid #e08a2c; font-weight: 600; }
  .muted { color: #666; font-size: .9rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
          gap: .8rem; }
  figure { margin: 0; font-size: .8rem; text-align: center; }
  figure img { width: 128px; height: 128px; object-fit: contain; background: #f0f0f0;
               image-rendering: pixelated; border-radius: 3px; }
  figcaption { margin-top: .2rem; overflow-wrap: anywhere; }
  .bad { color: #b03a2e; }
  pre { background: #f6f6f6; padding: .8rem; overflow: auto; font-size: .8rem;
        max-height: 40rem; white-space: pre-wrap; word-break: break-all; }
  footer { color: #888; font-size: .8rem; }
</style>
</head>
<body>
<main>
<header id="summary">
  <h1>{{ name }}</h1>
  {% set fit = cfg.get("fit") or {} %}
  <p class="sub">{{ cfg.strategy }} on {{ cfg.backbone }} · {{ cfg.num_classes }} classes
    {%- if fit.get("train_seconds") %} · trained in {{ fit.train_seconds }} s{% endif %}
    {%- if cfg.get("created") %} · {{ cfg.created }}{% endif %}</p>
  <nav>
    <a href="#learning-curves">learning curves</a> <a href="#confusion-matrix">confusion</a>
    <a href="#per-class">per class</a> <a href="#reliability">reliability</a>
    <a href="#mistakes">mistakes</a> <a href="#data">data</a>
    {%- if data_checks and data_checks.get("warnings") %}
    <a href="#data-checks" class="bad">data warnings</a>{% endif %}
    <a href="#config">configuration</a>
  </nav>
  {% if headline %}
  <table>
    <thead><tr><th>split</th><th>n</th><th>accuracy</th><th>macro F1</th><th>ROC AUC</th>
      <th>log loss</th><th>ECE</th></tr></thead>
    <tbody>
    {% for m in headline %}
      <tr><td>{{ m.split }}</td><td>{{ m.n }}</td><td>{{ m.accuracy | fmt }}</td>
        <td>{{ m.macro_f1 | fmt }}</td><td>{{ m.roc_auc | fmt }}</td>
        <td>{{ m.log_loss | fmt }}</td><td>{{ m.get("ece") | fmt }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}
  {% if metrics.get("test") %}
  <p class="note ok">Test figures come from {{ metrics.test.n }} {{ mistakes.noun }} that
    training, early stopping and head selection never saw.
    {%- if metrics.get("note") %} {{ metrics.note }}{% endif %}</p>
  {% elif metrics.get("validation") %}
  <p class="note warn" id="honesty">Only validation figures exist: there is no test split.
    {{ metrics.get("note", "") }}</p>
  {% else %}
  <p class="note warn" id="honesty">This run has no metrics.json figures.</p>
  {% endif %}
  {% if cfg.get("calibration") %}
  <p class="muted">Probabilities are calibrated: {{ cfg.calibration.get("method", "") }},
    temperature {{ cfg.calibration.get("temperature") }}.</p>
  {% endif %}
  {% if missing_glyphs %}
  <p class="note warn">No installed font draws {{ missing_glyphs | join(" ") }}: the plots show
    boxes for them. Install a CJK font (e.g. <code>apt-get install fonts-noto-cjk</code>) and run
    <code>tailor report</code> again.</p>
  {% endif %}
</header>

{% if data_checks and data_checks.get("warnings") %}
<section id="data-checks">
  <h2>Data warnings</h2>
  {% for w in data_checks.warnings %}<p class="note warn">{{ w }}</p>{% endfor %}
  <table>
    <thead><tr><th>check (content hashes, every run)</th><th>count</th></tr></thead>
    <tbody>
      <tr><td>groups of identical examples</td>
        <td>{{ data_checks.get("exact_duplicate_groups", 0) }}</td></tr>
      <tr><td>… under different labels</td>
        <td>{{ data_checks.get("duplicates_with_conflicting_labels", 0) }}</td></tr>
      <tr><td>… across train / validation / test</td>
        <td>{{ data_checks.get("duplicates_across_splits", 0) }}</td></tr>
      <tr><td>classes too small to learn or to judge</td>
        <td>{{ data_checks.get("tiny_classes", []) | length }}</td></tr>
    </tbody>
  </table>
  {% if data_checks.get("examples") %}
  <h3>Identical examples (first {{ data_checks.examples | length }} groups)</h3>
  <table><tbody>
  {% for g in data_checks.examples %}
    <tr><td class="path">{{ g | join(" = ") }}</td></tr>
  {% endfor %}
  </tbody></table>
  {% endif %}
  <p class="muted"><code>tailor doctor DATA</code> also finds near duplicates, likely label
    errors and outliers, and writes an exclude list for <code>tailor train --exclude</code>.</p>
</section>
{% endif %}

{% macro figure(key, alt) -%}
  {% set f = figures[key] %}
  {% if f.png %}<img class="fig" id="img-{{ key }}" alt="{{ alt }}" src="{{ f.png | png }}">
  {% else %}<p class="muted">Not drawn: {{ f.why }}</p>{% endif %}
{%- endmacro %}

{% set auto = (cfg.get("fit") or {}).get("auto") %}
{% if auto %}
<section id="auto">
  <h2>How this model was chosen <span class="muted">(--strategy auto)</span></h2>
  <p class="muted">Cheapest first, in {{ "%.0f" | format(auto.seconds) }} s
    {%- if auto.budget_seconds %} of a {{ "%.0f" | format(auto.budget_seconds) }}-s budget
    {%- endif %}; ranked by
    {{ auto.scored_by }} (the test split was not looked at); the chosen row is marked.</p>
  <table>
    <tr><th></th><th>strategy</th><th>backbone</th><th>val macro-F1</th><th>val log-loss</th>
      <th>val accuracy</th><th>seconds</th><th>status</th></tr>
    {% for row in auto.leaderboard %}
    <tr{% if row.chosen %} class="chosen"{% endif %}>
      <td>{{ "&#9733;" | safe if row.chosen else "" }}</td><td>{{ row.strategy }}</td>
      <td>{{ row.backbone or "-" }}</td>
      <td>{{ "%.3f" | format(row.val_macro_f1) if row.val_macro_f1 is not none else "-" }}</td>
      <td>{{ "%.3f" | format(row.val_log_loss) if row.val_log_loss is number else "-" }}</td>
      <td>{{ "%.3f" | format(row.val_accuracy) if row.val_accuracy is not none else "-" }}</td>
      <td>{{ "%.1f" | format(row.train_seconds) if row.train_seconds is not none else "-" }}</td>
      <td>{{ row.status }}</td>
    </tr>
    {% endfor %}
  </table>
</section>
{% endif %}

<section id="learning-curves">
  <h2>Learning curves</h2>
  {% if cfg.strategy == "linear-probe" %}
  <p class="muted">The linear probe trains no epochs: it picks the regularisation C of its
    logistic-regression head; accuracy and log loss for every C tried, the chosen C marked.</p>
  {% else %}
  <p class="muted">Loss and validation accuracy per epoch; the dashed line marks where the body
    starts training (after the head-only epochs); the dotted line is the epoch whose weights were
    kept (lowest validation loss).</p>
  {% endif %}
  {{ figure("learning_curves", "learning curves") }}
</section>

<section id="confusion-matrix">
  <h2>Confusion matrix <span class="muted">({{ held_name or "no held-out split" }})</span></h2>
  {{ figure("confusion_matrix", "confusion matrix") }}
</section>

<section id="per-class">
  <h2>Precision, recall and F1 per class
    <span class="muted">({{ held_name or "no held-out split" }})</span></h2>
  {{ figure("per_class", "per-class precision, recall and F1") }}
  {% if held %}
  <table>
    <thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
    </thead>
    <tbody>
    {% for c, m in held.per_class.items() %}
      <tr><td>{{ c }}</td><td>{{ m.precision | fmt }}</td><td>{{ m.recall | fmt }}</td>
        <td>{{ m.f1 | fmt }}</td><td>{{ m.support }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}
</section>

<section id="reliability">
  <h2>Reliability <span class="muted">({{ held_name or "no held-out split" }})</span></h2>
  <p class="muted">How far stated confidence is from accuracy: 15 equal-width bins of the
    top-label probability; the expected calibration error (ECE) is the example-weighted mean gap.
  </p>
  {{ figure("reliability", "reliability diagram") }}
</section>

<section id="mistakes">
  <h2>Most confident mistakes <span class="muted">({{ held_name or "no held-out split" }}
    split)</span></h2>
  {% if not mistakes.available %}
  <p class="muted">This run has no predictions.csv (trained before reports existed): train again
    to see its mistakes.</p>
  {% elif not mistakes.total %}
  <p class="note ok">No mistakes on the {{ mistakes.n }} {{ held_name }} {{ mistakes.noun }}.</p>
  {% else %}
  {% set listed = mistakes.rows | length + mistakes.gone | length + mistakes.texts | length
     + mistakes.clips | length %}
  <p class="muted">{{ mistakes.total }} of {{ mistakes.n }} {{ held_name }} {{ mistakes.noun }}
    are misclassified; the {{ listed }} the model was most sure about:</p>
  {% if mistakes.texts %}
  <table><thead><tr><th>where</th><th>text</th><th>true</th><th>predicted</th>
    <th>confidence</th></tr></thead>
    <tbody>
    {% for r in mistakes.texts %}
      <tr><td class="path">{{ r.path }}</td><td class="snippet">{{ r.text }}</td>
        <td>{{ r.label }}</td><td class="bad">{{ r.predicted }}</td>
        <td>{{ r.confidence | fmt(2) }}</td></tr>
    {% endfor %}
    </tbody></table>
  {% endif %}
  {% if mistakes.clips %}
  <table><thead><tr><th>clip</th><th>listen</th><th>true</th><th>predicted</th>
    <th>confidence</th></tr></thead>
    <tbody>
    {% for r in mistakes.clips %}
      <tr><td class="path">{{ r.path }}</td><td><audio controls preload="none"
        src="{{ r.uri }}"></audio></td>
        <td>{{ r.label }}</td><td class="bad">{{ r.predicted }}</td>
        <td>{{ r.confidence | fmt(2) }}</td></tr>
    {% endfor %}
    </tbody></table>
  {% endif %}
  <div class="grid">
  {% for r in mistakes.rows %}
    <figure><img alt="{{ r.name }}" title="{{ r.path }}" src="{{ r.uri }}">
      <figcaption>true <b>{{ r.label }}</b><br>
        predicted <b class="bad">{{ r.predicted }}</b> ({{ r.confidence | fmt(2) }})<br>
        <span class="muted">{{ r.name }}</span></figcaption></figure>
  {% endfor %}
  </div>
  {% if mistakes.gone %}
  <h3>Files no longer readable</h3>
  <table><thead><tr><th>file</th><th>true</th><th>predicted</th><th>confidence</th></tr></thead>
    <tbody>
    {% for r in mistakes.gone %}
      <tr><td class="path">{{ r.path }}</td><td>{{ r.label }}</td><td>{{ r.predicted }}</td>
        <td>{{ r.confidence | fmt(2) }}</td></tr>
    {% endfor %}
    </tbody></table>
  {% endif %}
  {% endif %}
</section>

<section id="data">
  <h2>Data</h2>
  <h3>Class counts per split</h3>
  <table>
    <thead><tr><th>class</th>{% for s in counts.splits %}<th>{{ s }}</th>{% endfor %}
      <th>total</th></tr></thead>
    <tbody>
    {% for r in counts.rows %}
      <tr><td>{{ r.name }}</td>{% for n in r.counts %}<td>{{ n }}</td>{% endfor %}
        <td>{{ r.total }}</td></tr>
    {% endfor %}
      <tr><th>all</th>{% for n in counts.totals %}<th>{{ n }}</th>{% endfor %}
        <th>{{ counts.totals | sum }}</th></tr>
    </tbody>
  </table>
  <h3 id="skipped">Files skipped ({{ skipped | length }})</h3>
  {% if skipped %}
  <table><thead><tr><th>file</th><th>reason</th><th>when</th></tr></thead><tbody>
  {% for s in skipped[:max_skipped] %}
    <tr><td class="path">{{ s.path }}</td><td class="path">{{ s.reason }}</td>
      <td>{{ s.stage }}</td></tr>
  {% endfor %}
  </tbody></table>
  {% if skipped | length > max_skipped %}<p class="muted">… and {{ skipped | length - max_skipped }}
    more, all listed in config.json.</p>{% endif %}
  {% else %}
  <p class="muted">None: every file was read.</p>
  {% endif %}
</section>

<section id="config">
  <h2>Configuration <span class="muted">(config.json, every setting resolved)</span></h2>
  <pre>{{ config_json }}</pre>
</section>
<footer>Built {{ built }} by modeltailor {{ version }} in {{ seconds }} s from the run's files
  (no model was run). Rebuild: <code>tailor report &lt;run folder&gt;</code>.</footer>
</main>
</body>
</html>
"""
