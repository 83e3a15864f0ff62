"""report.html: the eval report as one self-contained page (plots as inline SVG, no script, nothing fetched)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

WIDTH, HEIGHT, PAD = 560, 260, 44
COLORS = {"base": "#9aa5b1", "tuned": "#2f6fde", "loss": "#2f6fde", "eval_loss": "#e0823d"}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatlike eval {{ run_id }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #1f2933; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
.verdict { font-size: 1.2em; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; } figcaption { color: #52606d; font-size: .9em; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #e4e7eb; padding: .35em .5em;
text-align: left; vertical-align: top; white-space: pre-wrap; }
th { background: #f5f7fa; } .who { color: #52606d; font-size: .85em; }
.real { background: #f0fff4; } .tuned { background: #eef4ff; } .base { background: #f5f7fa; }
</style></head><body>
<h1>Is it you? Evaluation of run {{ run_id }}</h1>
<p class="verdict">{{ report.verdict }}</p>
<p>Held-out: {{ report.heldout.scored }} of {{ report.heldout.conversations }} conversations scored
({{ report.heldout.too_long }} longer than sequence_len), {{ report.heldout.replies }} replies of yours,
{{ report.heldout.tokens }} tokens, tokenized exactly as training tokenized them. Lower is better: the tuned
model's negative log-likelihood of your real replies, per token, against the base model's.</p>
<div class="plots">
<figure id="nll-plot">{{ nll_svg }}<figcaption>Mean NLL per token of your held-out replies, with 95% bootstrap
intervals over conversations. Improvement {{ "%.3f"|format(report.nll.improvement.nll) }}
[{{ "%.3f"|format(report.nll.improvement.ci95[0]) }}, {{ "%.3f"|format(report.nll.improvement.ci95[1]) }}].</figcaption></figure>
<figure id="curve-plot">{{ curve_svg }}<figcaption>Training loss{% if has_eval %} and eval loss{% endif %} against
step, from the run's log.</figcaption></figure>
</div>
<h2>Style</h2>
<table><tr><th></th>{% for name in style_names %}<th>{{ "you" if name == "real" else name }}</th>{% endfor %}</tr>
{% for key, label in style_rows %}<tr><td>{{ label }}</td>{% for name in style_names %}
<td>{{ fmt(report.style[name][key]) }}</td>{% endfor %}</tr>{% endfor %}</table>
<h2>Side by side ({{ report.side_by_side|length }} held-out conversations, seed {{ report.settings.seed }})</h2>
<table><tr><th>context</th><th>you</th><th>tuned</th><th>base</th></tr>
{% for pair in report.side_by_side %}<tr><td>{% for m in pair.context[-4:] %}<div><span class="who">{{ m.role }}:</span>
{{ m.content }}</div>{% endfor %}</td><td class="real">{{ pair.real }}</td><td class="tuned">{{ pair.tuned }}</td>
<td class="base">{{ pair.base }}</td></tr>{% endfor %}</table>
<h2>Settings</h2><p>{% for key, value in report.settings.items() %}{{ key }}: {{ value }}{% if not loop.last %};
{% endif %}{% endfor %}</p>
</body></html>
"""

STYLE_ROWS = [("replies", "replies"), ("chars_mean", "length, mean (characters)"),
              ("chars_median", "length, median"), ("emoji_rate", "replies with an emoji"),
              ("question_rate", "replies with a question"), ("script_latin", "letters: Latin"),
              ("script_cyrillic", "letters: Cyrillic"), ("script_other", "letters: other")]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _scale(low: float, high: float, size: float, flip: bool = False):
    span = (high - low) or 1.0
    return (lambda v: PAD + (size - 2 * PAD) * (1 - (v - low) / span)) if flip else \
        (lambda v: PAD + (size - 2 * PAD) * (v - low) / span)


def _axes(x_label: str, y_label: str, y_low: float, y_high: float, x_ticks: Sequence[float] = ()) -> list[str]:
    y, x = _scale(y_low, y_high, HEIGHT, flip=True), _scale(min(x_ticks or [0]), max(x_ticks or [1]), WIDTH)
    parts = [f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#52606d"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#52606d"/>',
             f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">{x_label}</text>',
             f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle" font-size="12" '
             f'transform="rotate(-90 12 {HEIGHT / 2})">{y_label}</text>']
    for value in (y_low, (y_low + y_high) / 2, y_high):
        parts.append(f'<text x="{PAD - 4}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11">{value:.3g}</text>')
    for value in x_ticks:
        parts.append(f'<text x="{x(value):.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle" font-size="11">{value:g}</text>')
    return parts


def _svg(parts: Sequence[str], label: str) -> Markup:
    body = "".join(parts)
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
                  f'aria-label="{label}" viewBox="0 0 {WIDTH} {HEIGHT}">{body}</svg>')


def nll_chart(nll: Mapping[str, Any]) -> Markup:
    """Two bars, base and tuned, with their 95% intervals."""
    names = ["base", "tuned"]
    top = max(nll[n]["ci95"][1] for n in names) * 1.1 or 1.0
    y = _scale(0.0, top, HEIGHT, flip=True)
    parts = _axes("model", "NLL per token", 0.0, top)
    slot = (WIDTH - 2 * PAD) / len(names)
    for i, name in enumerate(names):
        x, mid = PAD + slot * i + slot * 0.25, PAD + slot * (i + 0.5)
        value, (low, high) = nll[name]["nll"], nll[name]["ci95"]
        parts += [
            f'<rect class="bar" x="{x:.1f}" y="{y(value):.1f}" width="{slot * 0.5:.1f}" '
            f'height="{HEIGHT - PAD - y(value):.1f}" fill="{COLORS[name]}"/>',
            f'<line x1="{mid:.1f}" y1="{y(low):.1f}" x2="{mid:.1f}" y2="{y(high):.1f}" stroke="#1f2933" stroke-width="2"/>',
            f'<text x="{mid:.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle" font-size="12">{name} {value:.3f}</text>',
        ]
    return _svg(parts, "NLL per token, base and tuned")


def curve_chart(points: Sequence[Mapping[str, float]]) -> Markup:
    """Training loss (and eval loss) against step."""
    series = {key: [(p["step"], p[key]) for p in points if key in p] for key in ("loss", "eval_loss")}
    values = [v for line in series.values() for _, v in line] or [0.0, 1.0]
    steps = [s for line in series.values() for s, _ in line] or [0, 1]
    x, y = _scale(min(steps), max(steps), WIDTH), _scale(min(values), max(values), HEIGHT, flip=True)
    parts = _axes("step", "loss", min(values), max(values), (min(steps), max(steps)))
    for key, line in series.items():
        if line:
            coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in line)
            parts.append(f'<polyline class="line" points="{coords}" fill="none" stroke="{COLORS[key]}" stroke-width="2"/>')
    if not any(series.values()):
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no loss in the run\'s log</text>')
    return _svg(parts, "training loss against step")


def html(run_id: str, report: Mapping[str, Any]) -> str:
    template = Environment(autoescape=True).from_string(PAGE)
    names = [name for name in ("real", "tuned", "base") if name in report["style"]]
    return template.render(run_id=run_id, report=report, nll_svg=nll_chart(report["nll"]),
                           curve_svg=curve_chart(report["training_curve"]),
                           has_eval=any("eval_loss" in p for p in report["training_curve"]),
                           style_names=names, style_rows=STYLE_ROWS, fmt=_fmt)
