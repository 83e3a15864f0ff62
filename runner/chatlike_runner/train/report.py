"""report.html: the eval report as one self-contained page (plots as inline SVG, no script, nothing fetched)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from .failures import VERBATIM_WORDS

WIDTH, HEIGHT, PAD = 560, 260, 44
COLORS = {"base": "#9aa5b1", "tuned": "#2f6fde", "loss": "#2f6fde", "eval_loss": "#e0823d", "yours": "#2f9e59",
          "theirs": "#c4c9cf"}
AUTHORSHIP_LABELS = {"yours": "you (held-out)", "theirs": "others (held-out)", "tuned": "tuned", "base": "base"}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatlike eval {{ report.run_id }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #1f2933; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
.verdict { font-size: 1.1em; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; } figcaption { color: #52606d; font-size: .9em; max-width: 560px; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #e4e7eb; padding: .35em .5em;
text-align: left; vertical-align: top; white-space: pre-wrap; }
th { background: #f5f7fa; } .who { color: #52606d; font-size: .85em; } .caveat { color: #9a4d00; }
.real { background: #f0fff4; } .tuned { background: #eef4ff; } .base { background: #f5f7fa; }
</style></head><body>
<h1>Is it you? Evaluation of run {{ report.run_id }}</h1>
<p class="verdict">{{ report.verdict }}</p>
{% if report.blind %}<h2 id="blind">Blind test, judged by you (seed {{ report.blind.seed }})</h2>
<table><tr><th>round</th><th>asked</th><th>answered</th><th>skipped</th><th>result</th><th>exact 95% interval</th>
<th>p against a coin</th></tr>
{% for name, r in report.blind.rounds.items() %}<tr><td>{{ round_labels[name] }}</td><td>{{ r.asked }}</td>
<td>{{ r.answered }}</td><td>{{ r.skipped }}</td><td>{{ r.hits }} of {{ r.trials }}{% if r.share is not none %}
({{ pct(r.share) }}){% endif %}</td><td>{% if r.ci95 %}{{ pct(r.ci95[0]) }} – {{ pct(r.ci95[1]) }}{% else %}–{% endif %}</td>
<td>{{ fmt(r.p_value) }}</td></tr>{% endfor %}</table>
<p>"You or the model": the model passes when you take its reply for yours. A model you cannot tell from yourself
passes about half the time (50%, a coin); below that you can tell it apart, and the interval says by how much this
many answers can tell. "Tuned or base": the share of pairs where the tuned model's reply sounded more like you.</p>
<table><tr><th>round</th><th>reply 1</th><th>reply 2</th><th>you chose</th></tr>
{% for a in report.blind.answers %}<tr><td>{{ "you or the model" if a.round == "you" else "tuned or base" }}</td>{% for who in a.order %}<td class="{{ who }}">{{ a.replies[loop.index0] }}
<div class="who">{{ "you" if who == "real" else who }}</div></td>{% endfor %}<td>{{ "skipped" if a.chose == "skip" else ("yours" if a.chose == "real" else a.chose) }}</td></tr>{% endfor %}</table>{% endif %}
<h2 id="authorship">Authorship: would a stylometric classifier take it for you?</h2>
{% if report.authorship and report.authorship.scores %}<div class="plots"><figure id="authorship-plot">{{ authorship_svg }}
<figcaption>Share of each kind of text the classifier attributes to you, with 95% bootstrap intervals over
conversations. It learnt from the training split only ({{ report.authorship.training.yours }} messages of yours,
{{ report.authorship.training.theirs }} of the others): your held-out replies are the ceiling, the others' held-out
messages the floor; a model that writes like you lands near the ceiling.</figcaption></figure></div>
{% elif report.authorship is none %}<p class="caveat">Not measured: the run's training data was not available to this
eval (moved or changed since the run).</p>{% endif %}
{% for caveat in (report.authorship.caveats if report.authorship else []) %}<p class="caveat">{{ caveat }}</p>{% endfor %}
<h2 id="failures">The failures people hit ({{ report.failures.real.replies }} held-out contexts)</h2>
<table><tr><th></th><th>you</th><th>tuned</th><th>base</th></tr>
{% for key, label in failure_rows %}<tr><td>{{ label }}</td>{% for who in ("real", "tuned", "base") %}
<td>{{ fmt(report.failures[who].get(key)) }}</td>{% endfor %}</tr>{% endfor %}
{% if report.failures.memorization_checked %}<tr><td>replies repeating a training reply of yours ({{ verbatim }}+ words
verbatim)</td>{% for who in ("real", "tuned", "base") %}<td>{{ report.failures[who].memorized|length }}</td>{% endfor %}</tr>{% endif %}</table>
<p>Never ends: the reply ran to the token limit without an end-of-turn token (an exported model that does this
talks on forever). Distinct-2: distinct word pairs over all word pairs (low: the same phrases again and again).
Repeats itself: a word 4-gram twice in one reply. Another script: most letters in another script than your reply
to the same context (the language itself is not detected). Length distance: the Kolmogorov–Smirnov statistic
between the reply lengths and yours (0 alike, 1 no overlap).</p>
{% if report.failures.memorization_checked %}<h3 id="memorized">Memorization</h3>
{% if report.failures.tuned.memorized %}<p class="caveat">These tuned replies recite a training reply of yours word for
word. These are private chats: a model that does this leaks them to whoever talks with it.</p>
<table><tr><th>tuned reply</th><th>the words it shares</th><th>training reply of yours</th></tr>
{% for m in report.failures.tuned.memorized %}<tr><td class="tuned">{{ m.reply }}</td><td>{{ m.span }} ({{ m.words }} words)</td>
<td class="real">{{ m.training_reply }}</td></tr>{% endfor %}</table>{% else %}<p>No tuned reply repeats
{{ verbatim }} or more words of a training reply of yours.</p>{% endif %}
<p>For reference: {{ report.failures.real.memorized|length }} of your own {{ report.failures.real.replies }} held-out
replies share {{ verbatim }}+ words with a training reply (how much you repeat yourself).</p>{% endif %}
<h2>Held-out loss</h2>
<p>Held-out: {{ report.heldout.scored }} of {{ report.heldout.conversations }} conversations scored
({{ report.heldout.too_long }} longer than sequence_len), {{ report.heldout.replies }} replies of yours,
{{ report.heldout.tokens }} tokens, tokenized exactly as training tokenized them. Lower is better: the tuned
model's negative log-likelihood of your real replies, per token, against the base model's. Loss is a weak proxy
for "sounds like you": it can rise while replies get better.</p>
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
<h2>Side by side ({{ side|length }} held-out contexts{% if report.blind %} not in the blind test{% endif %}, seed {{ report.settings.seed }})</h2>
<table><tr><th>context</th><th>you</th><th>tuned</th><th>base</th></tr>
{% for pair in side %}<tr><td>{% for m in pair.context[-4:] %}<div><span class="who">{{ m.role }}:</span>
{{ m.content }}</div>{% endfor %}</td><td class="real">{{ pair.real }}</td><td class="tuned">{{ pair.tuned }}{% if not pair.tuned_ended %}
<div class="who">(cut at the token limit)</div>{% endif %}</td><td class="base">{{ pair.base }}</td></tr>{% endfor %}</table>
<h2>Settings</h2><p>{% for key, value in report.settings.items() %}{{ key }}: {{ value }}{% if not loop.last %};
{% endif %}{% endfor %}</p>
</body></html>
"""

FAILURE_ROWS = [("never_ends", "never ends (cut at the token limit)"), ("distinct_2", "distinct-2"),
                ("repeats_itself", "repeats itself (a 4-gram twice)"), ("other_script", "another script than yours"),
                ("length_distance", "length distance to yours (the lengths themselves: Style)")]
ROUND_LABELS = {"you": "you or the model: it passed for you", "base": "tuned or base: tuned sounded more like you"}
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


def bar_chart(bars: Sequence[tuple[str, float, Sequence[float] | None, str]], y_label: str, label: str,
              top: float | None = None) -> Markup:
    """Bars (name, value, 95% interval or None, color), each with its interval drawn on it."""
    top = top or max([value for _, value, _, _ in bars] + [interval[1] for _, _, interval, _ in bars if interval]) * 1.1 \
        or 1.0
    y = _scale(0.0, top, HEIGHT, flip=True)
    parts = _axes("", y_label, 0.0, top)
    slot = (WIDTH - 2 * PAD) / max(1, len(bars))
    for i, (name, value, interval, color) in enumerate(bars):
        x, mid = PAD + slot * i + slot * 0.25, PAD + slot * (i + 0.5)
        parts += [f'<rect class="bar" x="{x:.1f}" y="{y(value):.1f}" width="{slot * 0.5:.1f}" '
                  f'height="{HEIGHT - PAD - y(value):.1f}" fill="{color}"/>',
                  f'<text x="{mid:.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle" font-size="12">{name} '
                  f'{value:.3g}</text>']
        if interval:
            parts.append(f'<line x1="{mid:.1f}" y1="{y(interval[0]):.1f}" x2="{mid:.1f}" y2="{y(interval[1]):.1f}" '
                         'stroke="#1f2933" stroke-width="2"/>')
    return _svg(parts, label)


def nll_chart(nll: Mapping[str, Any]) -> Markup:
    """Two bars, base and tuned, with their 95% intervals."""
    return bar_chart([(name, nll[name]["nll"], nll[name]["ci95"], COLORS[name]) for name in ("base", "tuned")],
                     "NLL per token", "NLL per token, base and tuned")


def authorship_chart(scores: Mapping[str, Any]) -> Markup:
    """The share attributed to you of each kind of text, with its 95% interval."""
    bars = [(AUTHORSHIP_LABELS[name], scores[name]["share"], scores[name]["ci95"], COLORS[name])
            for name in AUTHORSHIP_LABELS if scores.get(name, {}).get("share") is not None]
    return bar_chart(bars, "share attributed to you", "share of each kind of text attributed to you", top=1.0)


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


def html(report: Mapping[str, Any]) -> str:
    """report.html for `report` (report.json's content, its verdict included)."""
    template = Environment(autoescape=True).from_string(PAGE)
    names = [name for name in ("real", "tuned", "base") if name in report["style"]]
    blind = {a["id"] for a in (report.get("blind") or {}).get("answers", [])}
    scores = (report.get("authorship") or {}).get("scores")
    return template.render(report=report, nll_svg=nll_chart(report["nll"]),
                           authorship_svg=authorship_chart(scores) if scores else "",
                           curve_svg=curve_chart(report["training_curve"]),
                           has_eval=any("eval_loss" in p for p in report["training_curve"]),
                           side=[p for p in report["side_by_side"] if p["id"] not in blind],
                           style_names=names, style_rows=STYLE_ROWS, failure_rows=FAILURE_ROWS,
                           round_labels=ROUND_LABELS, verbatim=VERBATIM_WORDS, fmt=_fmt, pct=_pct)


def _pct(share: float) -> str:
    return f"{100 * share + 0.0:.0f}%"  # + 0.0: no "-0%"


# A signal ranks as strongest or weakest only where the base and you differ by at least this much (a share of replies,
# a distance between 0 and 1): where the base already writes like you, the tuned model has nothing to show there.
DIFFER = 0.1


@dataclass(frozen=True)
class Signal:
    """What one measure says: its name, its phrase in the verdict, and how far the tuned model moved from the base
    toward you on it (0: not at all, 1: all the way, below 0: away from you), None where it is not ranked."""

    name: str
    phrase: str
    moved: float | None = None


def moved(base: float, tuned: float, yours: float) -> float | None:
    """The share of the way from the base to you that the tuned model went; None where the two differ too little."""
    return (tuned - base) / (yours - base) if abs(yours - base) >= DIFFER else None


def _signals(report: Mapping[str, Any]) -> list[Signal]:
    """Each signal the report measured, in the verdict's order."""
    found = []
    for name, r in ((report.get("blind") or {}).get("rounds") or {}).items():
        if r["trials"]:
            interval = f"exact 95% interval {_pct(r['ci95'][0])}–{_pct(r['ci95'][1])}"
            if name == "you":  # no base in this round: it says how close, not how far the model moved
                found.append(Signal("the blind test", f"passes for you in {r['hits']} of {r['trials']} blind pairs "
                                                      f"({interval}; a coin: 50%)"))
            else:  # a coin (50%) is no move; always the tuned model's reply (100%) is all the way
                found.append(Signal("tuned against base", f"sounds more like you than the base in {r['hits']} of "
                                                          f"{r['trials']} pairs ({interval})", 2 * r["share"] - 1))
    authorship = report.get("authorship") or {}
    scores = authorship.get("scores") or {}
    if authorship.get("recognises_you"):
        tuned, base, yours = (scores[n]["share"] for n in ("tuned", "base", "yours"))
        found.append(Signal("authorship", f"{_pct(tuned)} of its replies are attributed to you (base {_pct(base)}, "
                                          f"your own held-out {_pct(yours)})", moved(base, tuned, yours)))
    nll = report["nll"]  # you: a loss of 0, every reply of yours predicted
    found.append(Signal("held-out loss", f"held-out loss {nll['tuned']['nll']:.2f} per token against the base's "
                                         f"{nll['base']['nll']:.2f}", moved(nll["base"]["nll"], nll["tuned"]["nll"], 0.0)))
    tuned, base, real = (report["failures"][who] for who in ("tuned", "base", "real"))
    if tuned.get("never_ends") is not None:  # your replies all end
        found.append(Signal("ending its replies", f"never stops in {_pct(tuned['never_ends'])} of replies",
                            moved(base["never_ends"], tuned["never_ends"], 0.0)))
    if tuned.get("repeats_itself") is not None:
        found.append(Signal("repetition", f"repeats a 4-gram within {_pct(tuned['repeats_itself'])} of replies",
                            moved(base["repeats_itself"], tuned["repeats_itself"], real["repeats_itself"])))
    if tuned.get("other_script") is not None:  # yours are in your script
        found.append(Signal("script", f"{_pct(tuned['other_script'])} of replies in another script than yours",
                            moved(base["other_script"], tuned["other_script"], 0.0)))
    if tuned.get("length_distance") is not None:  # yours are 0 from yours
        found.append(Signal("reply length", f"reply lengths {tuned['length_distance']:.2f} from yours "
                                            "(Kolmogorov–Smirnov)",
                            moved(base["length_distance"], tuned["length_distance"], 0.0)))
    if "memorized" in tuned:  # a leak, not a likeness: never ranked
        count = len(tuned["memorized"])
        found.append(Signal("memorization", f"{count} of its {tuned['replies']} replies recite a training reply of "
                                            "yours verbatim" if count else
                            "none of its replies recites a training reply of yours"))
    return found


def verdict(report: Mapping[str, Any]) -> str:
    """One short paragraph: what was measured, then the strongest and the weakest signal by how far the tuned model
    moved from the base toward you (only where the two differ), then what the numbers are not worth (when the
    classifier cannot recognise you, or the training data was not there)."""
    found = _signals(report)
    ranked = [signal for signal in found if signal.moved is not None]
    best, worst = (pick(ranked, key=lambda signal: signal.moved) for pick in (max, min)) if ranked else (None, None)
    lead = {"the blind test", "tuned against base", "authorship", "held-out loss", "ending its replies",
            "memorization"}
    shown = [signal.phrase for signal in found if signal.name in lead or signal in (best, worst)]
    text = f"Run {report['run_id']}: {'; '.join(shown)}. "
    if best is None or worst is None:
        text += "No signal ranks: on each measure the base already writes like you."
    elif best is worst:
        text += f"The one signal where the base and you differ: {best.name} ({_pct(best.moved)} of the way to you)."
    else:  # ties: the first listed
        text += (f"Strongest signal: {best.name} ({_pct(best.moved)} of the way from the base to you); weakest: "
                 f"{worst.name} ({_pct(worst.moved)}).")
    authorship = report.get("authorship")
    if authorship is None:
        text += " Authorship and memorization were not measured: the run's training data was not available."
    elif not authorship.get("scores"):
        text += f" Authorship: {authorship['caveats'][0]}."
    elif not authorship.get("recognises_you"):
        text += " The authorship classifier cannot recognise you on held-out text, so it says nothing here."
    elif authorship["caveats"]:
        text += f" Caveat: {authorship['caveats'][0]}."
    return text
