"""Write a run's results: ``results.json`` (every number), ``report.md`` and ``report.html``
(tables in the shape of the paper's Tables 1-2 plus sample-level, spectral, speed and silence
tables), ``figures/`` (per-stem bar charts, reference-vs-system spectrograms of the excerpt) and
``audio/`` (the excerpt as short files, linked from the reports).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import write_audio
from engine.constants import STEMS
from engine.errors import install_hint
from engine.evaluation import figures
from engine.evaluation.excerpt import Excerpt
from engine.evaluation.harness import EvalRun

AUDIO_FORMATS = ("mp3", "wav", "none")


@dataclass(frozen=True)
class Table:
    """A report table: ``rows`` of formatted cells under ``header``."""

    title: str
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def clean(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN/inf)."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _types(result: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["type"] for s in result["systems"]}


def _value(summary: dict[str, Any], system: str, stem: str, metric: str) -> float | None:
    cell = summary["systems"][system]["stems"][stem].get(metric)
    return None if cell is None else float(cell["value"])


def stem_table(result: dict[str, Any], metric: str, title: str, caption: str) -> Table:
    """One row per system: the metric per stem and the average over stems."""
    summary, types = result["summary"], _types(result)
    rows = []
    for name in types:
        cells = [_fmt(_value(summary, name, s, metric)) for s in STEMS]
        avg = summary["systems"][name]["avg"].get(metric)
        rows.append((name, types[name], *cells, _fmt(avg["value"] if avg else None)))
    return Table(title, caption, ("Model", "Type", *STEMS, "avg"), tuple(rows))


def _reference(summary: dict[str, Any], metric: str, stem: str = "vocals") -> float | None:
    """The true stem's own score for ``metric`` ("dnsmos_sig", "nisqa_mos", ...), if scored."""
    family, _, key = metric.partition("_")
    if family == "dnsmos":
        ref = summary["reference_dnsmos"] if stem == "vocals" else None
    else:
        ref = (summary.get("reference_nisqa") or {}).get(stem)
    return None if not ref else float(ref[key])


def vocal_table(
    result: dict[str, Any], columns: Sequence[tuple[str, str]], title: str, caption: str
) -> Table:
    """``(header, metric)`` columns on the vocal stem, one row per system, true vocals first."""
    summary, types = result["summary"], _types(result)
    rows = [("reference (true vocals)", "–", *(_fmt(_reference(summary, m)) for _, m in columns))]
    for name in types:
        cells = (_fmt(_value(summary, name, "vocals", m)) for _, m in columns)
        rows.append((name, types[name], *cells))
    return Table(title, caption, ("Model", "Type", *(h for h, _ in columns)), tuple(rows))


def table2(result: dict[str, Any]) -> Table:
    """The paper's Table 2: DNSMOS SIG/BAK/OVRL and NISQA on vocals (those that were run)."""
    metrics = set(result["config"]["metrics"])
    columns: list[tuple[str, str]] = []
    parts = []
    if "dnsmos" in metrics:
        columns += [("SIG", "dnsmos_sig"), ("BAK", "dnsmos_bak"), ("OVRL", "dnsmos_ovrl")]
        parts.append("DNSMOS P.835 SIG/BAK/OVRL (16 kHz)")
    if "nisqa" in metrics:
        columns.append(("NISQA", "nisqa_mos"))
        parts.append("NISQA v2.0 MOS (48 kHz)")
    caption = f"{' and '.join(parts)} of the vocal stem (1-5, higher is better), mean over songs."
    names = ", ".join(n for n in ("DNSMOS", "NISQA") if n.lower() in metrics)
    return vocal_table(result, columns, f"Table 2: vocals quality ({names})", caption)


def nisqa_dimensions_table(result: dict[str, Any]) -> Table:
    """NISQA's MOS and its four dimensions on vocals."""
    columns = [
        ("MOS", "nisqa_mos"),
        ("Noisiness", "nisqa_noi"),
        ("Coloration", "nisqa_col"),
        ("Discontinuity", "nisqa_dis"),
        ("Loudness", "nisqa_loud"),
    ]
    caption = (
        "NISQA v2.0 on the vocal stem: overall MOS and the four quality dimensions (1-5, higher "
        "means less of that impairment), 48 kHz mono, mean over songs."
    )
    return vocal_table(result, columns, "NISQA dimensions on vocals", caption)


def nisqa_stem_table(result: dict[str, Any]) -> Table:
    """NISQA MOS of every stem, the true stems first (a speech model: read it apart)."""
    caption = (
        "NISQA v2.0 MOS per stem (1-5, higher is better), mean over songs. NISQA models speech "
        "quality: outside the vocals it says how speech-like and clean a stem sounds, not how "
        "well it is separated; compare each stem's rows with its true stem's."
    )
    table = stem_table(result, "nisqa_mos", "NISQA MOS per stem", caption)
    summary = result["summary"]
    refs = [_reference(summary, "nisqa_mos", s) for s in STEMS]
    scored = [r for r in refs if r is not None]
    avg = float(np.mean(scored)) if scored else None
    first = ("reference (true stems)", "–", *(_fmt(r) for r in refs), _fmt(avg))
    return Table(table.title, table.caption, table.header, (first, *table.rows))


def speed_table(result: dict[str, Any]) -> Table:
    """RTF, CPU RTF and peak RSS of the built-in systems."""
    speed = result["speed"]
    rows = []
    for name, s in speed["systems"].items():
        rows.append(
            (
                name,
                _fmt(s["rtf"], 4),
                _fmt(s["cpu_rtf"], 4),
                _fmt(s["audio_seconds"], 1),
                _fmt(s["peak_rss_mib"], 0),
                _fmt(s["rss_over_idle_mib"], 0),
            )
        )
    caption = (
        "Each separation ran alone in a fresh process. RTF = separation wall time / audio "
        "duration (lower is faster); CPU RTF counts CPU time of all threads. Peak RSS is the "
        f"process's high-water mark; an idle process that only read the audio peaked at "
        f"{_fmt(speed['idle_rss_mib'], 0)} MiB. External estimates have no timing."
    )
    header = ("Model", "RTF", "CPU RTF", "audio s", "peak RSS MiB", "over idle MiB")
    return Table("Speed and memory", caption, header, tuple(rows))


def silent_table(result: dict[str, Any]) -> Table | None:
    """Stems whose reference is silent: the level of each system's estimate."""
    silent = result["summary"]["silent"]
    if not silent:
        return None
    names = [s["name"] for s in result["systems"]]
    rows = tuple(
        (c["song"], c["stem"], *(_fmt(c["estimate_rms_db"][n], 1) for n in names)) for c in silent
    )
    caption = (
        f"These references are below {result['config']['silence_db']:.0f} dBFS RMS, so they are "
        "not scored (and not in the averages). Cells: RMS level of each system's estimate in dBFS "
        "(lower is better: what leaks into a stem that should be empty; – is digital silence)."
    )
    return Table("Silent references", caption, ("Song", "Stem", *names), rows)


def _song_cell(stems: dict[str, Any], key: str) -> float | None:
    """One per-song cell: the mean over scored stems, or the vocals' NISQA MOS."""
    if key == "nisqa":
        vocals = stems.get("vocals", {}).get("nisqa")
        return float(vocals["mos"]) if vocals else None
    vals = [v[key] for v in stems.values() if v.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def song_table(result: dict[str, Any]) -> Table | None:
    """Per song and system: ViSQOL and SDR averaged over stems, NISQA MOS of the vocals (those
    that were run); ``None`` when none was."""
    metrics = set(result["config"]["metrics"])
    keys = [(k, label) for k, label, _ in _SONG_COLUMNS if k in metrics]
    if not keys:
        return None
    names = [s["name"] for s in result["systems"]]
    rows = []
    for song in result["songs"]:
        cells = [_fmt(_song_cell(song["systems"][n]["stems"], k)) for n in names for k, _ in keys]
        rows.append((song["song"], _fmt(song["seconds"], 1), *cells))
    header = ("Song", "s", *(f"{n} {label}" for n in names for _, label in keys))
    caption = (
        "; ".join(f"{label}: {what}" for k, label, what in _SONG_COLUMNS if k in metrics) + "."
    )
    return Table("Per song", caption, header, tuple(rows))


_SONG_COLUMNS = (
    ("visqol", "ViSQOL", "mean over the scored stems of the song"),
    ("sdr", "SDR", "mean over the scored stems of the song"),
    ("nisqa", "NISQA vocals", "MOS of the vocal stem"),
)


def build_tables(result: dict[str, Any]) -> list[Table]:
    """Every table of the report, in order."""
    metrics = set(result["config"]["metrics"])
    out: list[Table] = []
    spec = [
        (
            "visqol",
            "Table 1: ViSQOL per stem",
            "ViSQOL v3 MOS-LQO (1-5, higher is better), audio mode, 48 kHz mono; mean over songs.",
        ),
        (
            "sdr",
            "SDR (BSS-Eval v4)",
            "dB, higher is better: per song the median over 1-s frames "
            "(museval's SDR), then the median over songs (SiSEC convention).",
        ),
        ("si_sdr", "SI-SDR", "Scale-invariant SDR in dB (higher is better), mean over songs."),
        (
            "usdr",
            "uSDR",
            "SDR over the whole excerpt in dB (MDX-challenge style), mean over songs.",
        ),
        (
            "mrstft",
            "Multi-resolution STFT distance",
            "Spectral convergence + log-magnitude L1 at "
            "three resolutions, 48 kHz mono (lower is better; tolerant of small shifts).",
        ),
        (
            "logmel_l1",
            "Log-mel L1",
            "Mean |log-mel difference|, 120 bands, n_fft 2048, hop 960 at "
            "48 kHz (lower is better).",
        ),
    ]
    needs = {"usdr": "sdr", "logmel_l1": "logmel"}
    for key, title, caption in spec:
        if needs.get(key, key) in metrics:
            out.append(stem_table(result, key, title, caption))
        if key == "visqol" and {"dnsmos", "nisqa"} & metrics:
            out.append(table2(result))
        if key == "visqol" and "nisqa" in metrics:
            out += [nisqa_dimensions_table(result), nisqa_stem_table(result)]
    out.append(speed_table(result))
    silent = silent_table(result)
    if silent:
        out.append(silent)
    songs = song_table(result)
    if songs:
        out.append(songs)
    return out


def write_excerpt_audio(excerpt: Excerpt, folder: Path, fmt: str) -> dict[str, Path]:
    """Write mixture, true stems and every system's stems; ``label -> file``."""
    if fmt == "none":
        return {}
    items = {"input mixture": excerpt.mixture}
    items |= {f"true {s}": a for s, a in excerpt.references.items()}
    for name, stems in excerpt.systems.items():
        items |= {f"{name}: {s}": a for s, a in stems.items()}
    out = {}
    for label, audio in items.items():
        data = np.clip(audio, -1.0, 1.0)
        path = folder / f"{label.replace(': ', '_').replace(' ', '_')}.{fmt}"
        write_audio(path, data, excerpt.rate, bit_depth=16, overwrite=True, mp3_quality="128")
        out[label] = path
    return out


def write_report(run: EvalRun, out: Path, audio_format: str = "mp3") -> dict[str, Path]:
    """Write JSON, Markdown, HTML, figures and audio under ``out``; returns the main files."""
    out.mkdir(parents=True, exist_ok=True)
    result = clean(run.result)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    figs = figures.write_all(result, run.excerpt, out / "figures")
    audio = write_excerpt_audio(run.excerpt, out / "audio", audio_format) if run.excerpt else {}
    tables = build_tables(result)
    md = out / "report.md"
    md.write_text(render_markdown(result, tables, figs, audio, run.excerpt, out))
    page = out / "report.html"
    page.write_text(render_html(result, tables, figs, audio, run.excerpt, out))
    return {"json": json_path, "markdown": md, "html": page}


def _intro(result: dict[str, Any], excerpt: Excerpt | None) -> list[str]:
    cfg, env, summ = result["config"], result["environment"], result["summary"]
    v = env["versions"]
    lines = [
        f"Data: `{cfg['data']}` — {summ['songs']} songs, {summ['seconds']:.1f} s of audio"
        + (f" (first {cfg['max_seconds']:g} s of each)" if cfg["max_seconds"] else "")
        + ".",
        f"Protocol: {cfg['protocol']}. Metrics: {', '.join(cfg['metrics'])}.",
        f"Run time: separation {result['timing']['separate_s']:.0f} s, scoring "
        f"{result['timing']['score_s']:.0f} s with {result['timing']['jobs']} worker(s).",
        f"Machine: {env['cpus']} CPUs ({env['machine']}), {env['date']}; stemtok "
        f"{v['stemtok']}, visqol-python {v['visqol-python']}, speechmos {v['speechmos']}, "
        f"numpy {v['numpy']}.",
        "Types: F floor (mixture as every stem), O oracle (uses the true stems), B classical "
        "baseline, G our generative model, D our discriminative teacher, E external estimates.",
    ]
    if cfg.get("nisqa_weights"):
        lines.append(
            f"NISQA weights: {cfg['nisqa_weights']} (sha256 {cfg['nisqa_weights_sha256'][:12]}…)."
        )
    if excerpt:
        lines.append(
            f"Excerpt: '{excerpt.song}' from {excerpt.start_s:.2f} s, "
            f"{excerpt.mixture.shape[1] / excerpt.rate:.1f} s."
        )
    return lines


def _notes(result: dict[str, Any]) -> list[str]:
    notes = []
    for song in result["songs"]:
        for name, sysres in song["systems"].items():
            notes += [f"{song['song']} / {name}: {n}" for n in sysres["notes"]]
    return notes


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _md_table(t: Table) -> list[str]:
    lines = [
        f"### {t.title}",
        "",
        t.caption,
        "",
        "| " + " | ".join(t.header) + " |",
        "|" + "|".join("---" for _ in t.header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in t.rows]
    return [*lines, ""]


def render_markdown(
    result: dict[str, Any],
    tables: Sequence[Table],
    figs: dict[str, Path],
    audio: dict[str, Path],
    excerpt: Excerpt | None,
    root: Path,
) -> str:
    """The report as Markdown (links to figures and audio are relative to ``root``)."""
    lines = ["# stemtok evaluation report", "", *(f"- {x}" for x in _intro(result, excerpt)), ""]
    for t in tables:
        lines += _md_table(t)
    lines += ["## Figures", ""]
    if not figs:
        lines += [f"No figures: matplotlib is not installed ({install_hint('eval')}).", ""]
    lines += [f"![{label}]({_rel(p, root)})\n" for label, p in figs.items()]
    if audio:
        lines += ["## Audio excerpt", ""]
        lines += [f"- [{label}]({_rel(p, root)})" for label, p in audio.items()] + [""]
    notes = _notes(result)
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    lines += ["## How the numbers are made", "", *(f"- {m}" for m in METHOD), ""]
    return "\n".join(lines)


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows
    )
    return (
        f"<h3>{html.escape(t.title)}</h3><p>{html.escape(t.caption)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _html_audio(audio: dict[str, Path], root: Path) -> str:
    if not audio:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td><audio controls preload='none' "
        f"src='{html.escape(_rel(p, root))}'></audio></td></tr>"
        for label, p in audio.items()
    )
    return f"<h2>Audio excerpt</h2><table>{rows}</table>"


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
)


def render_html(
    result: dict[str, Any],
    tables: Sequence[Table],
    figs: dict[str, Path],
    audio: dict[str, Path],
    excerpt: Excerpt | None,
    root: Path,
) -> str:
    """The report as one self-contained HTML page (figures and audio linked, not embedded)."""
    intro = "".join(f"<li>{html.escape(x)}</li>" for x in _intro(result, excerpt))
    body = [f"<h1>stemtok evaluation report</h1><ul>{intro}</ul>"]
    body += [_html_table(t) for t in tables]
    body.append("<h2>Figures</h2>")
    body += [
        f"<figure><img src='{html.escape(_rel(p, root))}' alt='{html.escape(label)}'>"
        f"<figcaption>{html.escape(label)}</figcaption></figure>"
        for label, p in figs.items()
    ]
    body.append(_html_audio(audio, root))
    notes = _notes(result)
    if notes:
        body.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        )
    body.append(
        "<h2>How the numbers are made</h2><ul>"
        + "".join(f"<li>{html.escape(m)}</li>" for m in METHOD)
        + "</ul>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>stemtok evaluation</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


METHOD: tuple[str, ...] = (
    "ViSQOL: visqol-python (ViSQOL v3 port with its SVR model), audio mode, on mono 48 kHz "
    "(channels averaged, resampled when needed); an all-zero estimate scores 1.0.",
    "DNSMOS: the P.835 ONNX model shipped in the speechmos package, run as speechmos does "
    "(9.01-s windows, 1-s hop, polynomial mapping) on mono 16 kHz vocals.",
    "NISQA: the NISQA v2.0 weights (read from a path, not shipped) run in numpy with NISQA's "
    "own features (48 kHz mono, 48 mel bands, 150-ms segments every 40 ms); signals longer than "
    "the 52 s NISQA accepts are scored in equal parts, averaged by length. On the true stems and "
    "every system's stems; Table 2 takes the vocals.",
    "SDR: BSS-Eval v4 (museval, images version) per 1-s frame, which equals "
    "10 log10(sum s^2 / sum (s_hat - s)^2) over the frame; frames where any scored reference or "
    "estimate is all-zero are skipped, as in museval; median over frames.",
    "SI-SDR per channel, averaged; uSDR over the whole excerpt. An all-zero estimate scores 0 dB.",
    "A stem whose reference is below the silence threshold is reported in 'Silent references' "
    "and left out of every average, so no NaN or infinity reaches a table.",
    "Under --through-codec, references and every system's outputs go through the codec "
    "(encode and decode) before scoring, as in the paper; the plain protocol scores raw audio.",
)
