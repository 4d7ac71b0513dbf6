"""RESULTS.md and latency.png from the numbers the harness collected (results.json's shape)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks import report_patterns, tables
from benchmarks.bodies import HEADLINE
from benchmarks.tables import FLOOR, OURS, SERVER_NAMES, TIMES

__all__ = ["FLOOR", "OURS", "SERVER_NAMES", "TIMES", "markdown", "plot"]

_ms = tables.ms
_ratio = tables.ratio
_table = tables.table


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "**not met**"


def markdown(results: dict[str, Any], picture: str | None) -> str:
    meta = results["meta"]
    settings = meta["settings"]
    machine = meta["machine"]
    out: list[str] = [
        "# Benchmark results: gpu-rdma-injector vs an nginx floor (issues 5 and 14)",
        "",
        f"Measured {meta['date']} on commit `{meta['commit']}`"
        + (" (work tree had uncommitted changes)" if meta.get("dirty") else "")
        + f" (webhook/ fingerprint `{meta.get('code_fingerprint', '?')}`, copied aside at the "
        "start so that the whole run measures one version)"
        + f" by `{meta['command']}`"
        + (
            " — **quick mode: one short run per point, for checking the harness, not for numbers**"
            if settings["quick"]
            else ""
        )
        + ".",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']:.0f} GiB, {machine['os']}, kernel {machine['kernel']}, "
        f"Python {machine['python']}, {machine['wrk']}, {machine['nginx']}, {machine['openssl']}.",
        "",
        f"Method: each point is wrk over HTTPS keep-alive (`-t{settings['wrk_threads']}`, one "
        f"POST of the body per request, `Content-Type: application/json`) for "
        f"{settings['duration']:g} s after a {settings['warmup']:g} s warm-up, repeated "
        f"{settings['repeat']} time(s) with a fresh server each time; tables show the median "
        "(errors: the sum). Ours is `gpu-rdma-injector serve --no-kube`, one worker, real TLS "
        "with a certificate from `gpu-rdma-injector certs generate`, logging at info to a file. "
        "The floor is nginx (one worker process) answering the same path with our own answer "
        "to the same body, canned, over TLS with the same certificate. Both listen on 127.0.0.1 "
        "and share the machine with the load generator. Latencies in ms.",
        "",
    ]
    if meta.get("changed_during_run"):
        out += [f"Note: {meta['changed_during_run']}.", ""]
    noise = results.get("noise")
    if noise:
        out += [
            f"Noise: other processes used {noise['others_cpu_percent']:.0f}% of the machine's "
            f"CPU during the run (load average {noise['loadavg_start']} at the start, "
            f"{noise['loadavg_end']} at the end); the `spread` column is (max - min) / median "
            "of throughput over the repetitions. "
            + (
                "The machine was shared with other engineers' test runs: treat single numbers "
                "as ±20%, ratios to the floor as the more stable figure, and re-run on a quiet "
                "machine before drawing fine conclusions."
                if noise["others_cpu_percent"] >= 10
                else "The machine was quiet."
            ),
            "",
        ]

    out += ["## Against the issue's targets", ""]
    rows = [[t["target"], t["goal"], t["measured"], _verdict(t["met"])] for t in results["targets"]]
    out += _table(["target", "goal", "measured", "verdict"], rows)
    out.append("")
    if picture:
        out += [f"![latency of the 8-rail body, ours vs the floor]({picture})", ""]

    out += ["## Closed loop (wrk): throughput and latency", ""]
    rows = []
    for row in results["closed_loop"]["median"]:
        ours = row["server"] == OURS
        rows.append(
            [
                row["body"],
                str(row["concurrency"]),
                SERVER_NAMES[row["server"]],
                f"{row['rps']:.0f}",
                _ratio(row.get("rps_ratio")) if ours else "",
                _ms(row["p50_ms"]),
                _ms(row["p90_ms"]),
                _ms(row["p99_ms"]),
                _ms(row["max_ms"]),
                _ratio(row.get("p99_ratio")) if ours else "",
                tables.us(row.get("cpu_us_per_review")),
                _ratio(row.get("cpu_ratio")) if ours else "",
                str(row["errors"]),
                f"{row['rss_peak_mib']:.0f}",
                f"{row['spread_pct']:.0f}%",
            ]
        )
    out += _table(
        [
            "body",
            "conc.",
            "server",
            "req/s",
            f"{TIMES} floor",
            "p50",
            "p90",
            "p99",
            "max",
            f"p99 {TIMES} floor",
            "CPU µs/review",
            f"CPU {TIMES} floor",
            "errors",
            "peak RSS MiB",
            "spread",
        ],
        rows,
    )
    out += [
        "",
        "`CPU µs/review` is the server's CPU time (utime + stime of its process tree, from "
        "/proc, every thread) over the run divided by the reviews answered in it: the TLS, "
        "HTTP, decision and log line of one review, whatever the load generator costs. "
        + report_patterns.noise_sentence(results, "closed_loop")
        + " `errors` = answers that were not 2xx plus socket errors (connect, read, write, "
        "timeout > 5 s). `peak RSS` is the server's whole process tree over its session with "
        "that body (warm-up and every concurrency, so the same on each of its rows): the "
        "kernel's VmHWM when it stopped, or the highest VmRSS polled every 50 ms, whichever "
        "is larger.",
        "",
    ]

    out += report_patterns.sections(results)

    startup = results["startup"]
    out += [
        "## Start-up",
        "",
        f"From process start (`gpu-rdma-injector serve --no-kube` with the 8-rail policy and "
        f"certificate files) to the first 200 from `/readyz`, polled every 5 ms: median "
        f"**{startup['median_s']:.2f} s** over {len(startup['seconds'])} starts "
        f"({', '.join(f'{s:.2f}' for s in startup['seconds'])}). "
        f"RSS of the idle, ready process: {startup['idle_rss_mib']:.0f} MiB.",
        "",
    ]

    nads = results["nad_memory"]
    out += [
        f"## Memory with {nads['nads']:,} NADs in the cache",
        "",
        "A process that imports what `serve` imports (with the Kubernetes client) and builds "
        f"the app, then fills the NAD cache with {nads['nads']:,} real-looking NAD objects "
        f"(annotations, managedFields, an ib-sriov CNI config; {nads['list_mib']:.1f} MiB as "
        f"JSON), one fresh process per way of filling it; median of {nads['runs']} process(es). "
        "The target is judged on the first row, the path `serve` takes at start-up.",
        "",
    ]
    labels = {
        "informer": "the informer lists them (pages from a stand-in API), as at start-up",
        "events": "one ADDED event per NAD, as a watch delivers them",
        "replace": "`apply(REPLACE, list)` with the whole List parsed at once",
    }
    rows = [
        [
            labels[mode],
            f"{nads[mode]['rss_before_nads_mib']:.1f}",
            f"{nads[mode]['rss_mib']:.1f}",
            f"{nads[mode]['hwm_mib']:.1f}",
            nads[mode]["method"],
        ]
        for mode in labels
        if mode in nads
    ]
    out += _table(
        ["filled by", "RSS before, MiB", "RSS after, MiB", "peak (VmHWM), MiB", "through"], rows
    )
    out += [
        "",
        "The NAD facts themselves are small (the event-filled cache shows it). Holding a whole "
        "parsed List at once costs far more, and the process keeps that memory afterwards: "
        "CPython does not give freed small-object arenas back to the system when they are "
        "fragmented.",
        "",
    ]

    workers = results["workers"]
    out += ["## Workers", ""]
    if workers["available"]:
        rows = [
            [
                str(row["workers"]),
                f"{row['rps']:.0f}",
                _ms(row["p50_ms"]),
                _ms(row["p99_ms"]),
                str(row["errors"]),
                f"{row['rss_peak_mib']:.0f}",
            ]
            for row in workers["rows"]
        ]
        out += [f"`serve --workers N`, {workers['body']} body at -c{workers['concurrency']}:", ""]
        out += _table(["workers", "req/s", "p50", "p99", "errors", "peak RSS MiB (all)"], rows)
    else:
        out += _table(
            ["workers", "req/s", "p99"],
            [["1 vs 2", "not available", "`serve --workers` does not exist in this version"]],
        )
    out.append("")

    profile = results.get("profile") or {}
    out += ["## Where the time goes (py-spy, 8-rail body)", ""]
    if profile.get("skipped"):
        out += [f"Not profiled: {profile['skipped']}.", ""]
    else:
        out += [
            f"py-spy sampled the server for {profile['seconds']:g} s under wrk -c"
            f"{profile['concurrency']} with the {HEADLINE} body ({profile['samples']} samples, "
            f"{'with' if profile['native'] else 'without'} native frames; each sample charged to "
            "the innermost frame of a known layer; "
            f"{profile.get('idle_samples', 0)} samples of waiting threads left out).",
            "",
        ]
        out += [_profile_sentence(profile["layers"]), ""]
        out += _table(
            ["layer", "share"],
            [[x["layer"], f"{x['percent']:.0f}%"] for x in profile["layers"]],
        )
        out += ["", "Functions with the most samples of their own:", ""]
        out += _table(
            ["function", "share"],
            [[f"`{x['function']}`", f"{x['percent']:.1f}%"] for x in profile["top_self"]],
        )
        if profile.get("svg"):
            out += ["", f"Flamegraph: [{profile['svg']}]({profile['svg']})."]
        if profile.get("notes"):
            out += ["", *profile["notes"]]
        out.append("")

    out += ["## Bodies", ""]
    rows = [
        [b["key"], b["title"], f"{b['bytes']:,}", "patch" if b["expect_patch"] else "no patch"]
        for b in results["bodies"]
    ]
    out += _table(["body", "what", "bytes", "answer"], rows)
    out += [
        "",
        "Each body is a real AdmissionReview (from `tests/fixtures/admission-reviews/`, "
        "captured from kube-apiserver v1.36), checked once with curl against both servers "
        "(200, an AdmissionReview echoing the uid, the expected patch) before it is loaded.",
        "",
        "## Reproduce",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        f"Raw numbers, every repetition: `{meta['results_json']}`.",
        "",
    ]
    return "\n".join(out)


def _profile_sentence(layers: list[dict[str, Any]]) -> str:
    """Where the time goes, in one sentence: the three biggest layers, then TLS and logging."""
    if not layers:
        return "py-spy took no samples of work."
    share = {x["layer"].split(" (")[0]: x["percent"] for x in layers}
    top = [f"{x['layer'].split(' (')[0]} ({x['percent']:.0f}%)" for x in layers[:3]]
    extra = [
        f"{name} {share.get(name, 0.0):.0f}%"
        for name in ("TLS", "logging", "metrics")
        if name not in {x["layer"].split(" (")[0] for x in layers[:3]}
    ]
    return (
        f"Most of the server's busy time goes to {top[0]}"
        + (f", then {', '.join(top[1:])}" if len(top) > 1 else "")
        + (f"; by comparison {', '.join(extra)}." if extra else ".")
    )


def _mantissa(value: float) -> int:
    return round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0


def plot(results: dict[str, Any], path: Path) -> bool:
    """latency.png; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    some = FuncFormatter(
        lambda value, _position: f"{value:g}" if _mantissa(value) in (2, 5) else ""
    )
    rows = [r for r in results["closed_loop"]["median"] if r["body"] == HEADLINE]
    if not rows:
        return False
    concurrencies = sorted({r["concurrency"] for r in rows})
    by = {(r["server"], r["concurrency"]): r for r in rows}
    colours = {"p50_ms": "#1f77b4", "p90_ms": "#ff7f0e", "p99_ms": "#d62728"}
    styles = {OURS: ("-", "o"), FLOOR: ("--", "s")}

    figure, (latency_ax, rate_ax, fixed_ax) = plt.subplots(
        1, 3, figsize=(15, 6.2), gridspec_kw={"width_ratios": [1.4, 1, 1]}
    )
    for server in (OURS, FLOOR):
        line, marker = styles[server]
        for key, colour in colours.items():
            values = [by[(server, c)][key] for c in concurrencies]
            latency_ax.plot(
                concurrencies,
                values,
                linestyle=line,
                marker=marker,
                color=colour,
                label=f"{SERVER_NAMES[server]} {key[:3]}",
            )
            if key == "p99_ms":
                for c, value in zip(concurrencies, values, strict=True):
                    latency_ax.annotate(
                        _ms(value),
                        (c, value),
                        textcoords="offset points",
                        xytext=(6, 4),
                        fontsize=8,
                        color=colour,
                    )
    latency_ax.set_xscale("log", base=2)
    latency_ax.set_yscale("log")
    latency_ax.yaxis.set_major_formatter(plain)
    latency_ax.yaxis.set_minor_formatter(some)
    latency_ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    latency_ax.set_xlabel("concurrent connections (wrk -c)")
    latency_ax.set_ylabel("latency, ms (log scale)")
    latency_ax.set_title(f"Closed loop, {HEADLINE} body: latency percentiles")
    latency_ax.grid(True, which="both", alpha=0.3)
    latency_ax.legend(
        fontsize=8,
        ncol=2,
        title="solid: ours, dashed: floor",
        title_fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
    )

    width = 0.38
    positions = range(len(concurrencies))
    for offset, server in ((-width / 2, OURS), (width / 2, FLOOR)):
        values = [by[(server, c)]["rps"] for c in concurrencies]
        bars = rate_ax.bar(
            [p + offset for p in positions],
            values,
            width,
            label=SERVER_NAMES[server],
            color="#2ca02c" if server == OURS else "#7f7f7f",
        )
        for bar, c in zip(bars, concurrencies, strict=True):
            label = f"{bar.get_height():.0f}"
            if server == OURS:
                label += f"\n{_ratio(by[(OURS, c)].get('rps_ratio'))}"
            rate_ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    # A linear scale on purpose: the gap to the floor is the point of the picture.
    rate_ax.set_xticks(list(positions), [str(c) for c in concurrencies])
    rate_ax.set_xlabel("concurrent connections")
    rate_ax.set_ylabel("requests/s")
    rate_ax.set_title(f"Throughput (ours labelled {TIMES} floor)")
    rate_ax.grid(True, axis="y", alpha=0.3)
    rate_ax.margins(y=0.12)
    rate_ax.legend(fontsize=8)

    fixed = {r["server"]: r for r in results["fixed_rate"]["median"]}
    keys = [("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")]
    positions = range(len(keys))
    for offset, server in ((-width / 2, OURS), (width / 2, FLOOR)):
        if server in fixed:
            bars = fixed_ax.bar(
                [p + offset for p in positions],
                [fixed[server][k] for _, k in keys],
                width,
                label=SERVER_NAMES[server],
                color="#2ca02c" if server == OURS else "#7f7f7f",
            )
            for bar in bars:
                fixed_ax.annotate(
                    _ms(bar.get_height()),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    fixed_ax.set_yscale("log")
    fixed_ax.yaxis.set_major_formatter(plain)
    fixed_ax.yaxis.set_minor_formatter(some)
    fixed_ax.set_xticks(list(positions), [label for label, _ in keys])
    fixed_ax.set_ylabel("latency from scheduled send, ms (log scale)")
    fixed_ax.set_title(f"Open loop at {results['fixed_rate']['rate']:g} reviews/s")
    fixed_ax.grid(True, axis="y", which="both", alpha=0.3)
    fixed_ax.legend(fontsize=8)

    meta = results["meta"]
    figure.suptitle(
        f"gpu-rdma-injector vs nginx floor, {meta['date'][:10]}, commit {meta['commit'][:10]}, "
        f"{meta['machine']['nproc']} CPUs, median of {meta['settings']['repeat']} run(s)"
        + (" — QUICK MODE" if meta["settings"]["quick"] else ""),
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
