"""Markdown (for a pull-request comment) and JUnit XML (for CI) of comparisons and gates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.etree import ElementTree as ET

from evalkit.analysis.compare import CompareReport, Comparison, DeltaRow, base_vs_chat
from evalkit.analysis.gate import CheckResult, GateVerdict
from evalkit.analysis.snr import SNRRow


def num(x: float | None, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x + 0.0, spec)  # + 0.0: no "-0"


def signed(x: float | None) -> str:
    return num(x, "+.4g")


def pval(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def arrow(hib: bool | None) -> str:
    return "" if hib is None else (" ↑" if hib else " ↓")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _delta_rows(rows: Sequence[DeltaRow], correction: str) -> list[str]:
    header = [
        "",
        "task / family",
        "metric",
        "A",
        "B",
        "Δ (B−A)",
        "CI",
        "p",
        f"p ({correction})",
        "MDE",
        "n",
    ]
    body = []
    for r in rows:
        name = r.name if r.scope == "task" else f"**{r.name}** (family)"
        if r.group is not None:
            name += f" [{r.group}]"
        call = {"better": "✅ better", "worse": "❌ worse"}.get(r.call, "·")
        body.append(
            [
                call,
                name,
                r.metric + arrow(r.higher_is_better),
                num(r.a),
                num(r.b),
                signed(r.delta),
                f"[{num(r.ci_low)}, {num(r.ci_high)}]",
                pval(r.p_value),
                pval(r.p_adjusted),
                num(r.mde, ".3g"),
                str(r.n) if r.n_clusters == r.n else f"{r.n} ({r.n_clusters} clusters)",
            ]
        )
    return _table(header, body)


def comparison_markdown(c: Comparison, report: CompareReport) -> list[str]:
    o = report.options
    title = (
        f"### Format sensitivity: `{c.a}` → `{c.b}` (same model, raw prompts → chat template)"
        if c.kind == "format"
        else f"### `{c.a}` → `{c.b}`"
    )
    lines = [title, ""]
    rows = [r for r in c.rows if r.group is None]
    lines += _delta_rows(rows, o.correction)
    grouped = [r for r in c.rows if r.group is not None]
    if grouped:
        lines += ["", f"By `{o.by}`:", ""]
        lines += _delta_rows(grouped, o.correction)
    if c.warnings:
        lines += ["", "<details><summary>Pairing notes</summary>", ""]
        lines += [f"- {w}" for w in c.warnings]
        lines += ["", "</details>"]
    return [*lines, ""]


def compare_markdown(report: CompareReport) -> str:
    o = report.options
    lines = ["## evalkit compare", ""]
    lines += ["| run | checkpoint | chat template | suite |", "|---|---|---|---|"]
    for r in report.runs:
        ckpt = r.checkpoint.rsplit("/", 1)[-1] if r.checkpoint else "–"
        lines.append(
            f"| `{r.label}` | {ckpt} | {'yes' if r.chat_template else 'no'} | {r.suite or '–'} |"
        )
    lines += [
        "",
        f"Paired on the items both runs share. {o.level:.0%} CI of the delta (paired bootstrap, "
        f"{o.resamples} resamples{', clusters: ' + o.cluster if o.cluster else ''}); p: exact "
        f"McNemar for 0/1 metrics, else the bootstrap (test={o.test}); {o.correction} correction "
        f"at alpha {o.alpha:g}; MDE at {o.power:.0%} power. ✅/❌ = significant after correction.",
        "",
    ]
    tuning = base_vs_chat(report)
    if tuning:
        lines += ["### Base vs chat: what tuning changed, and what the format changes", ""]
        header = [
            "task / family",
            "metric",
            "base",
            "chat (raw)",
            "chat (template)",
            "Δ tuning",
            "Δ format",
            "Δ total",
        ]
        body = [
            [
                r.name if r.scope == "task" else f"**{r.name}** (family)",
                r.metric,
                num(r.base),
                num(r.chat_raw),
                num(r.chat_template),
                signed(r.tuning) + _mark(r.tuning_call),
                signed(r.format) + _mark(r.format_call),
                signed(r.total) + _mark(r.total_call),
            ]
            for r in tuning
        ]
        lines += _table(header, body)
        lines += [
            "",
            "Δ tuning: chat vs base on the raw prompts. Δ format: the chat model through its "
            "chat template vs raw prompts (format sensitivity). * = significant.",
            "",
        ]
    for c in report.comparisons:
        lines += comparison_markdown(c, report)
    if report.snr:
        lines += ["### Signal and noise (arXiv:2508.13144)", ""]
        lines += _table(SNR_COLUMNS, [snr_cells(s, low="⚠️ ") for s in report.snr])
        lines.append("")
    if report.warnings:
        lines += [f"> {w}" for w in report.warnings] + [""]
    return "\n".join(lines)


SNR_COLUMNS = ("task", "metric", "signal", "noise", "SNR", "models", "checkpoints")


def snr_cells(s: SNRRow, *, low: str) -> list[str]:
    """One task's signal-and-noise cells, in SNR_COLUMNS order, for every renderer (markdown
    here, the console in `evalkit.report.tables`); `low` marks a task whose SNR is low."""
    return [
        (low if s.low else "") + s.task,
        s.metric,
        num(s.signal, ".3g"),
        num(s.noise, ".3g"),
        num(s.snr, ".3g"),
        str(s.n_models),
        str(s.n_checkpoints),
    ]


def _mark(call: str) -> str:
    return "*" if call in ("better", "worse") else ""


# -- gate ------------------------------------------------------------------------------------

_OUTCOME = {"pass": "✅ PASS", "regression": "❌ REGRESSION", "inconclusive": "⚠️ INCONCLUSIVE"}


# The gate's table, in markdown here and on the console (report/tables.py).
GATE_COLUMNS = (
    "outcome",
    "check",
    "metric",
    "baseline",
    "candidate",
    "Δ",
    "CI (1−2α, uncorrected)",
    "margin",
    "n",
    "MDE",
    "why",
)


def check_cells(
    c: CheckResult, *, outcomes: Mapping[str, str], name: str, reason: str
) -> list[str]:
    """One gate check's cells, in GATE_COLUMNS order, for every renderer (markdown here, the
    console in `evalkit.report.tables`): the outcome, the check's name and the reason as that
    renderer writes them."""
    return [
        outcomes[c.outcome],
        f"{c.check.scope} {name}",
        c.check.metric + arrow(c.higher_is_better),
        num(c.baseline),
        num(c.candidate),
        signed(c.delta),
        f"[{num(c.ci_low)}, {num(c.ci_high)}]",
        num(c.check.margin, "g"),
        str(c.n),
        num(c.mde, ".3g"),
        reason,
    ]


def gate_markdown(v: GateVerdict) -> str:
    lines = [
        f"## evalkit gate: {_OUTCOME[v.outcome]} (exit {v.exit_code})",
        "",
        f"Policy `{v.policy}` (suite {v.suite or '–'}); baseline ({v.baseline_select}): "
        + ", ".join(f"`{b}`" for b in v.baseline)
        + "; candidate: "
        + ", ".join(f"`{c}`" for c in v.candidate),
        "",
    ]
    lines += _table(
        GATE_COLUMNS,
        [
            check_cells(c, outcomes=_OUTCOME, name=f"`{c.check.name}`", reason=c.reason)
            for c in v.checks
        ],
    )
    if v.warnings:
        lines += ["", *(f"> {w}" for w in v.warnings)]
    return "\n".join(lines) + "\n"


def gate_junit(v: GateVerdict) -> str:
    """One testsuite, one testcase per check: a regression is a failure, an inconclusive
    check is skipped (with its reason), a pass passes."""
    counts = {k: sum(c.outcome == k for c in v.checks) for k in ("regression", "inconclusive")}
    suite = ET.Element(
        "testsuite",
        name=f"evalkit-gate{'-' + v.suite if v.suite else ''}",
        tests=str(len(v.checks)),
        failures=str(counts["regression"]),
        skipped=str(counts["inconclusive"]),
        errors="0",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("outcome", v.outcome),
        ("exit_code", str(v.exit_code)),
        ("policy", v.policy or ""),
        ("baseline", ", ".join(v.baseline)),
        ("baseline_select", v.baseline_select),
        ("candidate", ", ".join(v.candidate)),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for c in v.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"evalkit.gate.{c.check.scope}",
            name=f"{c.check.name}.{c.check.metric}",
        )
        detail = (
            f"baseline {num(c.baseline)} candidate {num(c.candidate)} delta {signed(c.delta)} "
            f"CI [{num(c.ci_low)}, {num(c.ci_high)}] margin {c.check.margin:g} n {c.n}: {c.reason}"
        )
        if c.outcome == "regression":
            ET.SubElement(case, "failure", message=c.reason, type="regression").text = detail
        elif c.outcome == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {c.reason}")
        ET.SubElement(case, "system-out").text = detail
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )
