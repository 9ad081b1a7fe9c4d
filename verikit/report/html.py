"""Self-contained HTML reports for bench, audit and gate results (inline CSS, SVG and script; no requests).

Renderers take plain data (the JSON reports and rows verikit writes) and return one HTML string;
gathering that data from files is verikit.apps.html_inputs' job.
"""

from __future__ import annotations

import datetime as _dt
from html import escape
from pathlib import Path
from typing import Iterable, Sequence

from verikit.report.svg import Series, image, line_chart

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:12px}.cards{display:flex;gap:10px;flex-wrap:wrap;margin:14px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:90px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #eee;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f6f6;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#aaa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pill{border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap}
.good{background:#dff3e4;color:#1b5e20}.bad{background:#fde0e0;color:#b71c1c}
.warn{background:#fff3cd;color:#7a5b00}.neutral{background:#eceff1;color:#37474f}
.banner{font-size:20px;font-weight:600;padding:10px 14px;border-radius:6px;margin:12px 0}
.chart text{font-size:11px;fill:#333}.chart .title{font-size:13px;font-weight:600}
.chart .grid{stroke:#eee}.chart .frame{fill:none;stroke:#999}
.pairs{display:flex;flex-wrap:wrap;gap:14px}.pair{border:1px solid #ddd;border-radius:6px;padding:8px;
font-size:12px}.pair figure{display:inline-block;margin:0 6px;text-align:center}
.digit{border:1px solid #ccc}code{font-size:12px}
"""

# sorts a table by the clicked column: numbers by data-v (or their text), other cells as text
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th, column){
    th.addEventListener("click", function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = th.dataset.dir !== "up"; th.dataset.dir = up ? "up" : "down";
      function key(row){var cell = row.cells[column], v = cell.dataset.v !== undefined ? cell.dataset.v
        : cell.textContent; var n = parseFloat(v); return isNaN(n) ? v : n;}
      rows.sort(function(a, b){var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);});
      rows.forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""

TONE = {"sat": "bad", "falsified": "bad", "unsat": "good", "verified": "good", "certified": "good",
        "pass": "good", "fail": "bad", "warn": "warn", "error": "bad", "wrong": "bad", "correct": "good",
        "timeout": "warn", "unknown": "neutral", "misclassified": "neutral", "ignored": "neutral"}


def pill(word: str, tone: str | None = None) -> str:
    return f'<span class="pill {tone or TONE.get(word, "neutral")}">{escape(word)}</span>'


def cards(items: Iterable[tuple[str, object]]) -> str:
    return '<div class="cards">' + "".join(f'<div class="card"><b>{escape(str(value))}</b><span>{escape(name)}'
                                           "</span></div>" for name, value in items) + "</div>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, sortable: bool = False,
          numeric: Sequence[int] = ()) -> str:
    """Cells are HTML already (escape text before); columns listed in `numeric` are right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, subtitle: str, body: str) -> str:
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><h1>{escape(title)}</h1>'
            f'<div class="meta">{escape(subtitle)} · written {created} by verikit</div>{body}'
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def _seconds(value: float) -> str:
    return f'{value:.2f}'


def cactus(times: dict[str, Sequence[float]]) -> str:
    """Instances decided (y) within a time (x, log scale), one staircase per tool."""
    series = [Series(f"{name} ({len(values)})", tuple(sorted(values)), tuple(range(1, len(values) + 1)), step=True)
              for name, values in times.items() if values]
    if not series:
        return "<p>No instance decided: nothing to plot.</p>"
    return line_chart(series, x_label="time per instance (s, log scale)", y_label="instances decided",
                      log_x=True, title="cactus plot: instances decided within a time")


def bench_page(title: str, summary: dict, rows: list[dict], others: dict[str, list[float]]) -> str:
    """Counts, score, wrong answers first, the cactus plot (with `others`' decided times) and every row.

    `rows`: dicts with onnx, vnnlib, result, engine, seconds, message and (when known) truth.
    """
    counts = summary.get("counts", {})
    items = [("instances", len(rows)), *sorted(counts.items())]
    if summary.get("correct") or summary.get("wrong"):
        items += [("correct", summary.get("correct", 0)), ("wrong", len(summary.get("wrong", []))),
                  ("score", summary.get("score", 0))]
    items.append(("total s", f"{summary.get('total_s', 0.0):.1f}"))
    body = cards(items)
    wrong = summary.get("wrong", [])
    body += "<h2>Wrong answers</h2>"
    if wrong:
        body += table(("instance", "answer", "truth"), (
            (f"<code>{escape(Path(w['onnx']).name)} {escape(Path(w['vnnlib']).name)}</code>", pill(w["answer"]),
             pill(w["truth"], "good" if w["truth"] == "unsat" else "bad")) for w in wrong))
    else:
        body += f"<p>{pill('none', 'good')} no answer contradicts the ground truth" + (
            "" if summary.get("correct") else " (no ground truth given)") + ".</p>"
    decided = {"verikit": [r["seconds"] for r in rows if r["result"] in ("sat", "unsat")]}
    decided.update(others)
    body += "<h2>Cactus plot</h2>" + cactus(decided)
    ordered = sorted(rows, key=lambda r: (not r.get("wrong"), r["result"] not in ("error",), r["onnx"], r["vnnlib"]))
    body += "<h2>Instances</h2>" + table(
        ("model", "spec", "result", "truth", "engine", "s", "message"),
        ((escape(Path(r["onnx"]).name), escape(Path(r["vnnlib"]).name),
          pill(r["result"], "bad" if r.get("wrong") else None) + (" " + pill("wrong") if r.get("wrong") else ""),
          escape(r.get("truth", "")), escape(r.get("engine", "")),
          f'<span data-v="{r["seconds"]}">{_seconds(r["seconds"])}</span>', escape(r.get("message", "")))
         for r in ordered), sortable=True, numeric=(5,))
    return page(title, f"{len(rows)} instances", body)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def audit_page(report: dict, pictures: list[dict]) -> str:
    """The accuracy-vs-ε curve, per-ε counts, the sortable per-sample table and original/counterexample pairs.

    `pictures`: dicts with index, eps, label, original and witness (2-D or (3, H, W) arrays, raw units),
    original_prediction and witness_prediction.
    """
    results = sorted(report["results"], key=lambda r: r["eps"])
    settings = report["settings"]
    body = cards([("samples", report["data"]["samples"]), ("clean", _percent(report["clean_accuracy"])),
                  ("norm", "L∞" if settings["norm"] == "inf" else "L2"), ("method", settings["method"]),
                  ("seconds", f"{report['seconds']:.1f}")])
    eps = tuple(r["eps"] for r in results)
    body += "<h2>Accuracy against ε</h2>" + line_chart([
        Series("empirical robust (upper bound, replayed PGD)", eps,
               tuple(r["empirical_robust_accuracy"] for r in results), markers=True),
        Series(f"certified robust (lower bound, {settings['method']})", eps,
               tuple(r["certified_robust_accuracy"] for r in results), markers=True),
        *(Series(name, eps, tuple(r[key] for r in results), markers=True)
          for key, name in (("certified_by_lipschitz_accuracy", "certified by the Lipschitz bound"),
                            ("certified_by_ball_accuracy", "certified by CROWN on the L2 ball (rigorous)"))
          if results and all(key in r for r in results)),
        Series("clean", eps, tuple(report["clean_accuracy"] for _ in results), dash=True),
    ], x_label="ε (raw input units)", y_label="accuracy", y_range=(0.0, 1.0))
    body += table(("ε", "clean", "empirical", "certified", "certified #", "falsified #", "unknown #",
                   "misclassified #", "timed out"),
                  ((f"{r['eps']:g}", _percent(r["clean_accuracy"]), _percent(r["empirical_robust_accuracy"]),
                    _percent(r["certified_robust_accuracy"]), *(str(r["counts"][k]) for k in
                    ("certified", "falsified", "unknown", "misclassified")), "yes" if r["timed_out"] else "no")
                   for r in results), numeric=(1, 2, 3, 4, 5, 6, 7))
    if report.get("notes"):
        body += "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) + "</ul>"
    body += "<h2>Counterexamples</h2>"
    if pictures:
        body += ('<p>Each pair: the sample and the attack point that breaks it, both replayed through '
                 'onnxruntime, with the labels it predicts.</p><div class="pairs">')
        for p in pictures:
            both = (min(p["original"].min(), p["witness"].min()), max(p["original"].max(), p["witness"].max()))
            body += (f'<div class="pair">sample {p["index"]} at ε={p["eps"]:g} (label {p["label"]})<br>'
                     f'<figure>{image(p["original"], label="original", value_range=both)}<figcaption>original → '
                     f'{p["original_prediction"]}</figcaption></figure><figure>'
                     f'{image(p["witness"], label="counterexample", value_range=both)}<figcaption>counterexample → '
                     f'<b>{p["witness_prediction"]}</b></figcaption></figure></div>')
        body += "</div>"
    else:
        body += "<p>No counterexample to show (none found, or the inputs are not images).</p>"
    rows = []
    for sample in report["samples"]:
        for result in sample["results"]:
            margins = [result["certified_margin"], result["attack_margin"]]
            rows.append((str(sample["index"]), str(sample["label"]), str(sample["prediction"]),
                         f"{result['eps']:g}", pill(result["status"]),
                         *(f'<span data-v="{m}">{m:.4g}</span>' if m is not None else '<span data-v="">–</span>'
                           for m in margins)))
    body += "<h2>Samples</h2><p>Click a column to sort.</p>" + table(
        ("sample", "label", "prediction", "ε", "status", "certified margin", "attack margin"), rows,
        sortable=True, numeric=(0, 1, 2, 3, 5, 6))
    model = Path(report["model"]["path"]).name
    return page(f"verikit audit: {model}", f"data {report['data']['path']} · model sha256 "
                f"{report['model']['sha256'][:12]}", body)


def _describe_member(member: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in member.items() if k != "manipulation")


def perturbation_audit_page(report: dict, pictures: list[dict]) -> str:
    """Accuracy against each manipulation's magnitude, per-perturbation counts and the broken samples beside
    their originals (`pictures`: as `audit_page`'s, with `perturbation` and `member` instead of eps)."""
    results = report["results"]
    body = cards([("samples", report["data"]["samples"]), ("clean", _percent(report["clean_accuracy"])),
                  ("per-sample timeout", f"{report['settings']['sample_timeout_s']:g} s"),
                  ("seconds", f"{report['seconds']:.1f}")])
    body += "<h2>Per perturbation</h2>" + table(
        ("perturbation", "clean", "empirical", "certified", "certified #", "falsified #", "unknown #", "timeout #",
         "misclassified #", "s / sample"),
        ((escape(r["perturbation"]), _percent(r["clean_accuracy"]), _percent(r["empirical_accuracy"]),
          _percent(r["certified_accuracy"]), *(str(r["counts"][k]) for k in
          ("certified", "falsified", "unknown", "timeout", "misclassified")), f"{r['seconds_per_sample']:.2f}")
         for r in results), numeric=(1, 2, 3, 4, 5, 6, 7, 8, 9))
    body += "<h2>Broken samples</h2>"
    if pictures:
        body += ('<p>Each pair: the sample and the manipulated image that breaks it, recomputed from the '
                 'manipulation in numpy and replayed through onnxruntime, with the class it predicts.</p>'
                 '<div class="pairs">')
        for p in pictures:
            original, witness = (p[k][0] if p[k].ndim == 3 and p[k].shape[0] == 1 else p[k]
                                 for k in ("original", "witness"))
            both = (min(original.min(), witness.min()), max(original.max(), witness.max()))
            body += (f'<div class="pair">sample {p["index"]}, {escape(p["perturbation"])} (label {p["label"]})<br>'
                     f'<small>{escape(_describe_member(p["member"]))}</small><br>'
                     f'<figure>{image(original, label="original", value_range=both)}<figcaption>original → '
                     f'{p["original_prediction"]}</figcaption></figure><figure>'
                     f'{image(witness, label="manipulated", value_range=both)}<figcaption>manipulated → '
                     f'<b>{p["witness_prediction"]}</b></figcaption></figure></div>')
        body += "</div>"
    else:
        body += "<p>No sample was broken.</p>"
    curves = ""
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["magnitude"])
        if len(rows) < 2:
            continue  # one magnitude: the table says it all
        x = tuple(r["magnitude"] for r in rows)
        curves += f"<h2>{escape(kind)}: accuracy against magnitude</h2>" + line_chart([
            Series("empirical (upper bound, replayed witnesses)", x, tuple(r["empirical_accuracy"] for r in rows),
                   markers=True),
            Series("certified (lower bound, every member / theta)", x,
                   tuple(r["certified_accuracy"] for r in rows), markers=True),
            Series("clean", x, tuple(r["clean_accuracy"] for r in rows), dash=True),
        ], x_label=f"{kind} magnitude", y_label="accuracy", y_range=(0.0, 1.0))
    body += curves
    model = Path(report["model"]["path"]).name
    return page(f"verikit perturbation audit: {model}", f"data {report['data']['path']} · model sha256 "
                f"{report['model']['sha256'][:12]}", body)


def gate_page(report: dict) -> str:
    """Pass/fail, each check with its threshold and result, and the regressions against the baseline."""
    passed = report["passed"]
    body = (f'<div class="banner {"good" if passed else "bad"}">{"PASSED" if passed else "FAILED"}'
            f' (exit {report["exit_code"]})</div>')
    summary = report["summary"]
    body += cards([(name, summary[name]) for name in ("checks", "verified", "falsified", "unknown", "timeout",
                                                      "error", "regressions")])
    for title, lines, tone in (("Failures", report["failures"], "bad"), ("Warnings", report["warnings"], "warn")):
        if lines:
            body += f"<h2>{title}</h2><ul>" + "".join(f"<li>{pill(title[:-1].lower(), tone)} {escape(line)}</li>"
                                                      for line in lines) + "</ul>"
    thresholds = report["thresholds"]
    body += ("<h2>Checks</h2><p>Thresholds: " + ", ".join(f"{escape(k)} = <code>{escape(str(v))}</code>"
                                                          for k, v in thresholds.items()) + "</p>")
    rows = []
    for check in report["checks"]:
        metrics = check.get("metrics") or {}
        if "min_certified_accuracy" in metrics:
            threshold = f"certified ≥ {100 * metrics['min_certified_accuracy']:.1f}%"
            found = (f"certified {_percent(metrics['certified_robust_accuracy'])}, empirical "
                     f"{_percent(metrics['empirical_robust_accuracy'])}")
        else:
            threshold, found = "verified", check["verdict"]
        rows.append((f"<code>{escape(check['id'])}</code>", pill(check["status"] or "–"), pill(check["verdict"]),
                     escape(threshold), escape(found), escape(check["message"]),
                     f'<span data-v="{check["seconds"]}">{check["seconds"]:.2f}</span>'))
    body += table(("check", "status", "verdict", "threshold", "result", "message", "s"), rows, sortable=True,
                  numeric=(6,))
    baseline = report.get("baseline")
    body += "<h2>Baseline</h2>"
    if baseline is None:
        body += "<p>No baseline compared.</p>"
    else:
        body += f"<p>Compared {baseline['compared']} check(s) with <code>{escape(str(baseline['path']))}</code>.</p>"
        if baseline["regressions"]:
            body += table(("check", "kind", "before", "after", "message"), (
                (f"<code>{escape(r['id'])}</code>", pill(r["kind"], "bad"), escape(str(r["before"])),
                 escape(str(r["after"])), escape(r["message"])) for r in baseline["regressions"]))
        else:
            body += f"<p>{pill('no regressions', 'good')}</p>"
    return page(f"verikit gate: {Path(report['policy']['path']).name}",
                f"policy sha256 {report['policy']['sha256'][:12]} · {report['seconds']:.1f} s", body)


def soundness_page(report: dict) -> str:
    """A soundness run: judgement counts, the cactus plot and every answer, soundness bugs first."""
    bad = ("soundness_bug", "false_alarm", "truth_wrong")
    body = cards([(name.replace("_", " "), count) for name, count in report["counts"].items()])
    body += (f'<div class="banner {"good" if report["sound"] else "bad"}">'
             f'{"no soundness bug" if report["sound"] else "SOUNDNESS BUGS FOUND"}</div>')
    judgements = report["judgements"]
    body += "<h2>Cactus plot</h2>" + cactus({report["verifier"]: [j["seconds"] for j in judgements
                                                                  if j["answer"] in ("sat", "unsat")]})
    ordered = sorted(judgements, key=lambda j: (j["judgement"] not in bad, j["onnx"], j["vnnlib"]))
    body += "<h2>Answers</h2>" + table(
        ("model", "spec", "answer", "truth", "judgement", "s", "reason"),
        ((escape(Path(j["onnx"]).name), escape(Path(j["vnnlib"]).name), pill(j["answer"]), escape(j["truth"]),
          pill(j["judgement"], "bad" if j["judgement"] in bad else "good" if j["judgement"] in ("correct", "new_sat")
               else "neutral"), f'<span data-v="{j["seconds"]}">{j["seconds"]:.2f}</span>', escape(j["reason"]))
         for j in ordered), sortable=True, numeric=(5,))
    return page(f"verikit soundness: {Path(report['benchmark']).name}", f"verifier {report['verifier']}", body)


def nap_page(report: dict, pictures: list[dict]) -> str:
    """`nap verify`: the counts, one row per question, and the counterexamples as images.

    `pictures`: dicts with title and witness (2-D or (3, H, W) array) and prediction.
    """
    settings = report["settings"]
    region = "domain" if settings["eps"] is None else f"L∞ ε={settings['eps']:g}"
    body = cards([("questions", len(report["entries"])), ("region", region), ("δ", report["naps"]["delta"]),
                  *((k, v) for k, v in report["counts"].items()), ("seconds", f"{report['seconds']:.1f}")])
    rows = [(escape(e["question"]), escape(", ".join(str(v) for v in e["labels"])), escape(e["region"]),
             pill(e["verdict"]), escape(f"{e['engine']} {e['method']}".strip() or "–"), f"{e['seconds']:.2f}",
             "yes" if e.get("pattern_infeasible") else "", escape(e.get("reason", "")[:160]))
            for e in report["entries"]]
    body += "<h2>Questions</h2>" + table(("question", "classes", "region", "verdict", "engine", "s",
                                          "no input follows", "reason"), rows, sortable=True, numeric=(5,))
    body += "<h2>Counterexamples</h2>"
    if pictures:
        body += ('<p>Each input follows the NAP(s) on onnxruntime\'s hidden values and, for robustness, is '
                 'classified otherwise.</p><div class="pairs">')
        for p in pictures:
            body += (f'<div class="pair">{escape(p["title"])}<br><figure>{image(p["witness"], label="counterexample")}'
                     f'<figcaption>predicted <b>{p["prediction"]}</b></figcaption></figure></div>')
        body += "</div>"
    else:
        body += "<p>No counterexample to show (none found, or the inputs are not images).</p>"
    return page(f"verikit nap verify: {Path(report['model']['path']).name}",
                f"model sha256 {report['model']['sha256'][:12]} · NAPs δ={report['naps']['delta']}", body)


def write(text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
