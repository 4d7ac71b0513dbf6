"""The audit's result as people and programs read it (wire layer: output formats).

`table` is for a terminal: findings grouped by severity (errors first), one row per finding
with its check, its object and what is wrong then how to fix it, wrapped to the terminal's
width, ANSI colours only when asked; then a summary of what was read, what was skipped and why.
`as_json` is the whole result for programs; `summary` its counts alone (what the background
audit reads back). PolicyReports are webhook.policyreport's.
"""

from __future__ import annotations

import textwrap
from typing import Any

import orjson

from webhook.findings import KIND_NAMES, SEVERITIES, AuditResult, Finding, Severity

_COLOURS: dict[Severity, str] = {
    "error": "\033[1;31m",
    "warning": "\033[1;33m",
    "info": "\033[1;36m",
}
_RESET = "\033[0m"
_HEADINGS: dict[Severity, str] = {"error": "ERRORS", "warning": "WARNINGS", "info": "INFO"}
CHECK_WIDTH = 22
OBJECT_WIDTH = 32
MIN_TEXT_WIDTH = 30


def table(result: AuditResult, *, width: int = 100, colour: bool = False) -> str:
    text_width = max(MIN_TEXT_WIDTH, width - CHECK_WIDTH - OBJECT_WIDTH - 2)
    lines: list[str] = []
    for severity in SEVERITIES:
        found = [finding for finding in result.findings if finding.severity == severity]
        if not found:
            continue
        heading = f"{_HEADINGS[severity]} ({result.total(severity)})"
        lines.append(_COLOURS[severity] + heading + _RESET if colour else heading)
        lines.append(f"{'CHECK':<{CHECK_WIDTH}}{'OBJECT':<{OBJECT_WIDTH + 2}}WHAT IS WRONG / FIX")
        for finding in found:
            lines.extend(_row(finding, text_width))
            lines.append("")
    lines.extend(_footer(result))
    return "\n".join(lines) + "\n"


def _row(finding: Finding, text_width: int) -> list[str]:
    left = textwrap.wrap(finding.object.display(), OBJECT_WIDTH, break_on_hyphens=False)
    right = textwrap.wrap(finding.message, text_width, break_on_hyphens=False)
    right += textwrap.wrap("Fix: " + finding.fix, text_width, break_on_hyphens=False)
    rows = []
    for index in range(max(len(left), len(right))):
        check = finding.check if index == 0 else ""
        obj = left[index] if index < len(left) else ""
        text = right[index] if index < len(right) else ""
        rows.append(f"{check:<{CHECK_WIDTH}}{obj:<{OBJECT_WIDTH + 2}}{text}".rstrip())
    return rows


def _footer(result: AuditResult) -> list[str]:
    counts = ", ".join(
        _plural(result.total(severity), severity if severity != "info" else "info")
        for severity in SEVERITIES
    )
    read = ", ".join(
        _plural(count, KIND_NAMES[kind][:-1] if count == 1 else KIND_NAMES[kind], bare=True)
        for kind, count in result.objects.items()
        if kind in KIND_NAMES
    )
    lines = [f"{counts}. Read: {read or 'nothing'}."]
    if result.dropped:
        lines.append(f"{result.dropped} more findings not shown (the audit keeps the first ones).")
    lines.extend(f"Skipped {check}: {why}." for check, why in result.skipped)
    lines.extend(f"Note: {note}." for note in result.notes)
    return lines


def _plural(count: int, noun: str, *, bare: bool = False) -> str:
    if bare or noun == "info":
        return f"{count} {noun}"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def as_dict(result: AuditResult, *, with_findings: bool = True) -> dict[str, Any]:
    by_check: dict[str, dict[str, int]] = {}
    for (check, severity), count in sorted(result.counts.items()):
        by_check.setdefault(check, {})[severity] = count
    document: dict[str, Any] = {
        "summary": {severity: result.total(severity) for severity in SEVERITIES},
        "byCheck": by_check,
        "objects": dict(result.objects),
        "skipped": [{"check": check, "reason": why} for check, why in result.skipped],
        "notes": list(result.notes),
        "dropped": result.dropped,
    }
    if with_findings:
        document["findings"] = [
            {
                "check": finding.check,
                "severity": finding.severity,
                "object": {
                    "kind": finding.object.kind,
                    "namespace": finding.object.namespace,
                    "name": finding.object.name,
                    "uid": finding.object.uid,
                },
                "message": finding.message,
                "fix": finding.fix,
            }
            for finding in result.findings
        ]
    return document


def as_json(result: AuditResult) -> str:
    return orjson.dumps(as_dict(result), option=orjson.OPT_INDENT_2).decode() + "\n"


def summary(result: AuditResult) -> str:
    """One line of JSON: the counts, without the findings."""
    return orjson.dumps(as_dict(result, with_findings=False)).decode() + "\n"
