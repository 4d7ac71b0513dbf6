"""Markdown pieces shared by the report's sections: numbers, ratios, tables, server names."""

from __future__ import annotations

TIMES = "\N{MULTIPLICATION SIGN}"
OURS = "ours"
FLOOR = "floor"
SERVER_NAMES = {OURS: "gpu-rdma-injector", FLOOR: "nginx floor"}


def ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{TIMES}" if value < 10 else f"{value:.0f}{TIMES}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines
