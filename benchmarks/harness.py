"""`benchmarks/run`: measure the real webhook against an nginx floor and write the results.

Installs what it needs (wrk, nginx, curl from Debian; matplotlib and py-spy into the venv),
makes the bodies, then for each repetition and body serves the real webhook and the floor side
by side and drives both with the same wrk command, interleaved per concurrency, reading each
server's CPU time over every run. Then (benchmarks.patterns): an open loop at a fixed rate, the
same rate in bursts, a Job's burst of reviews released at once; start-up time, memory with many
NADs, 1 vs 2 workers when `serve --workers` exists, and one py-spy profile. Writes RESULTS.md,
latency.png, results.json (and the flamegraph) to benchmarks/, or with --quick to
benchmarks/out/. Only 127.0.0.1 is loaded, for a bounded time; every process started is stopped
by its id.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import goals, patterns, profiling, report, report_patterns
from benchmarks.bodies import BUILDERS, HEADLINE, ROOT, Body, check_answer
from benchmarks.targets import (
    VENV_BIN,
    BenchError,
    Certs,
    NginxFloor,
    Served,
    Webhook,
    curl_post,
    die_with_parent,
    generate_certs,
    nginx_binary,
    serve_supports_workers,
)
from benchmarks.wrk import run_wrk, wrk_binary, wrk_command

BENCH_DIR = ROOT / "benchmarks"
APT_PACKAGES = ("wrk", "nginx", "curl")
PIP_PACKAGES = {"matplotlib": "matplotlib>=3.8", "py-spy": "py-spy>=0.3.14"}
POLICY_RC = Path("/usr/sbin/policy-rc.d")
FULL_BODIES = ("small", "8-rail", "large", "no-patch")
QUICK_BODIES = ("small", "8-rail")


@dataclass
class Settings:
    quick: bool
    duration: float
    warmup: float
    repeat: int
    concurrency: list[int]
    bodies: list[str]
    rate: float
    rate_duration: float
    rate_warmup: float
    rate_connections: int
    rate_burst: int
    burst_size: int
    burst_connections: int
    bursts: int
    burst_gap: float
    starts: int
    nads: int
    profile_seconds: float
    profile: bool
    wrk_threads: int
    out: Path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- installing ---------------------------------------------------------------------------------


def _have(tool: str) -> bool:
    return (nginx_binary() if tool == "nginx" else shutil.which(tool)) is not None


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    """Keep apt from starting nginx as a system service (it would listen on port 80)."""
    if POLICY_RC.exists():
        yield
        return
    POLICY_RC.write_text("#!/bin/sh\n# benchmarks/run: no service starts now.\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC.unlink()


def install() -> None:
    """Idempotent: installs only what is missing."""
    missing = [package for package in APT_PACKAGES if not _have(package)]
    if missing:
        if os.geteuid() != 0:
            raise BenchError(
                f"{', '.join(missing)} missing and not root: run "
                f"'sudo apt-get install -y {' '.join(missing)}' or benchmarks/run --install-only "
                "as root"
            )
        log(f"installing {', '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with _no_service_start():
            for command in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            ):
                completed = subprocess.run(
                    command, env=env, capture_output=True, text=True, check=False, timeout=900
                )
                if completed.returncode != 0:
                    raise BenchError(f"{' '.join(command)} failed: {completed.stderr.strip()}")
    wanted = [
        spec
        for name, spec in PIP_PACKAGES.items()
        if not (
            (VENV_BIN / name).exists()
            if name == "py-spy"
            else importlib.util.find_spec(name) is not None
        )
    ]
    if wanted:
        log(f"installing {', '.join(wanted)} into {VENV_BIN.parent}")
        completed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-input", *wanted],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if completed.returncode != 0:
            raise BenchError(f"pip install {' '.join(wanted)} failed: {completed.stderr.strip()}")
    still = [package for package in APT_PACKAGES if not _have(package)]
    if still:
        raise BenchError(f"{', '.join(still)} still missing after installing")


def check_tools() -> None:
    missing = [package for package in APT_PACKAGES if not _have(package)]
    if missing:
        raise BenchError(
            f"{', '.join(missing)} not installed: run benchmarks/run --install-only (as root)"
        )


# -- the machine --------------------------------------------------------------------------------


def _output(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return ""
    return (completed.stdout + completed.stderr).strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def describe_machine() -> dict[str, Any]:
    nginx = nginx_binary()
    versions = {}
    for package in ("uvicorn", "fastapi", "starlette", "httptools", "uvloop", "orjson"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _output([wrk_binary(), "--version"]).splitlines()[0].split(" [")[0],
        "nginx": _output([nginx, "-v"]).replace("nginx version: ", "") if nginx else "no nginx",
        "openssl": ssl.OPENSSL_VERSION,
        "packages": versions,
    }


def _git(*args: str) -> str:
    return _output(["git", "-C", str(ROOT), *args])


class CpuNoise:
    """How much CPU other processes used while we ran: machine busy time minus ours."""

    def __init__(self) -> None:
        self.start_busy = self._machine_busy()
        self.start_ours = self._ours()
        self.start_wall = time.monotonic()
        self.loadavg_start = self._loadavg()

    @staticmethod
    def _machine_busy() -> float:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    @staticmethod
    def _loadavg() -> str:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])

    def finish(self) -> dict[str, Any]:
        wall = time.monotonic() - self.start_wall
        busy = self._machine_busy() - self.start_busy
        ours = self._ours() - self.start_ours
        capacity = wall * (os.cpu_count() or 1)
        return {
            "others_cpu_percent": max(0.0, 100 * (busy - ours) / capacity) if capacity else 0.0,
            "ours_cpu_percent": 100 * ours / capacity if capacity else 0.0,
            "wall_s": wall,
            "loadavg_start": self.loadavg_start,
            "loadavg_end": self._loadavg(),
        }


# -- measuring ----------------------------------------------------------------------------------


class Session:
    """The temporary directory, the certificate, and every server started, stopped at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.certs: Certs = generate_certs(work / "certs")
        self._live: list[Served] = []
        self._count = 0

    def _name(self, stem: str) -> Path:
        self._count += 1
        return self.work / f"{self._count:03d}-{stem}"

    def webhook(self, policy: Path, workers: int | None = None) -> Webhook:
        server = Webhook(self.certs, policy, self._name("webhook.log"), workers=workers)
        self._live.append(server)
        server.wait_ready(self.certs.ca)
        return server

    def floor(self, canned: bytes) -> NginxFloor:
        server = NginxFloor(self.certs, canned, self._name("nginx"))
        self._live.append(server)
        server.wait_ready(self.certs.ca)
        return server

    def stop(self, server: Served) -> None:
        server.stop()
        if server in self._live:
            self._live.remove(server)
        if isinstance(server, Webhook):
            # The access log of a whole session is large and only its tail matters on failure.
            server.log_path.unlink(missing_ok=True)

    def stop_all(self) -> None:
        for server in list(self._live):
            with contextlib.suppress(Exception):
                server.stop()
        self._live.clear()


@dataclass
class Prepared:
    body: Body
    body_file: Path
    policy_file: Path


def prepare(bodies: list[Body], work: Path) -> list[Prepared]:
    prepared = []
    for body in bodies:
        body_file = work / f"body-{body.key}.json"
        policy_file = work / f"policy-{body.key}.yaml"
        body_file.write_bytes(body.review)
        policy_file.write_text(body.policy_yaml)
        prepared.append(Prepared(body, body_file, policy_file))
    return prepared


def checked_answer(server: Served, item: Prepared, ca: Path) -> bytes:
    """One curl POST; the answer must have the body's expected shape."""
    status, answer = curl_post(server.port, "/mutate", item.body_file, ca)
    problems = check_answer(item.body, status, answer)
    if problems:
        raise BenchError(
            f"{server.name} answered the {item.body.key} body wrongly: {'; '.join(problems)}"
        )
    return answer


def closed_loop(session: Session, items: list[Prepared], s: Settings) -> list[dict[str, Any]]:
    runs = []
    for rep in range(1, s.repeat + 1):
        for item in items:
            ours = session.webhook(item.policy_file)
            canned = checked_answer(ours, item, session.certs.ca)
            floor = session.floor(canned)
            if checked_answer(floor, item, session.certs.ca) != canned:
                raise BenchError("the floor's answer differs from ours")
            servers = {"ours": ours, "floor": floor}
            with ours.polling_rss(), floor.polling_rss():
                for server in servers.values():
                    run_wrk(server.port, item.body_file, max(s.concurrency), s.warmup)
                for concurrency in s.concurrency:
                    for name, server in servers.items():
                        cpu_before = server.cpu_seconds()
                        result = run_wrk(
                            server.port, item.body_file, concurrency, s.duration, s.wrk_threads
                        )
                        cpu = server.cpu_seconds() - cpu_before
                        result.update(
                            body=item.body.key,
                            concurrency=concurrency,
                            server=name,
                            rep=rep,
                            server_cpu_s=cpu,
                            cpu_us_per_review=1e6 * cpu / max(1, result["requests"]),
                        )
                        runs.append(result)
                        log(
                            f"rep {rep} {item.body.key:8} c={concurrency:<3} {name:5} "
                            f"{result['rps']:8.0f} req/s  p99 {result['p99_ms']:7.2f} ms  "
                            f"CPU {result['cpu_us_per_review']:5.0f} us/review  "
                            f"errors {result['errors']}"
                        )
            for name, server in servers.items():
                peak = server.peak_rss_kib / 1024
                for result in runs:
                    if (result["rep"], result["body"], result["server"]) == (
                        rep,
                        item.body.key,
                        name,
                    ):
                        result["rss_peak_mib"] = peak
                session.stop(server)
    return runs


MEDIAN_FIELDS = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "rss_peak_mib",
    "cpu_us_per_review",
)


def _median_rows(
    runs: list[dict[str, Any]], keys: tuple[str, ...], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in keys), []).append(run)
    rows = []
    for key, group in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for field in fields:
            row[field] = statistics.median(run[field] for run in group)
        row["errors"] = sum(run["errors"] for run in group)
        row["runs"] = len(group)
        rates = [run.get("rps", run.get("achieved_rps", 0.0)) for run in group]
        middle = statistics.median(rates)
        row["spread_pct"] = 100 * (max(rates) - min(rates)) / middle if middle else 0.0
        rows.append(row)
    return rows


def summarise_closed(runs: list[dict[str, Any]], s: Settings) -> list[dict[str, Any]]:
    rows = _median_rows(runs, ("body", "concurrency", "server"), MEDIAN_FIELDS)
    floor = {(r["body"], r["concurrency"]): r for r in rows if r["server"] == "floor"}
    for row in rows:
        base = floor.get((row["body"], row["concurrency"]))
        if row["server"] == "ours" and base:
            row["rps_ratio"] = row["rps"] / base["rps"] if base["rps"] else None
            row["p99_ratio"] = row["p99_ms"] / base["p99_ms"] if base["p99_ms"] else None
            row["cpu_ratio"] = (
                row["cpu_us_per_review"] / base["cpu_us_per_review"]
                if base["cpu_us_per_review"]
                else None
            )
    order = {key: n for n, key in enumerate(s.bodies)}
    rows.sort(key=lambda r: (order[r["body"]], r["concurrency"], r["server"] != "ours"))
    return rows


def startup(session: Session, item: Prepared, s: Settings) -> dict[str, Any]:
    seconds, idle = [], []
    for _ in range(s.starts):
        server = Webhook(session.certs, item.policy_file, session.work / "startup.log")
        try:
            seconds.append(server.wait_ready(session.certs.ca))
            time.sleep(0.2)
            idle.append(server.rss_kib() / 1024)
        finally:
            server.stop()
    log(f"ready after {', '.join(f'{x:.2f}' for x in seconds)} s")
    return {
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "idle_rss_mib": statistics.median(idle),
    }


NAD_MODES = ("informer", "events", "replace")


def nad_memory(item: Prepared, s: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {"nads": s.nads, "runs": s.repeat, "all": []}
    for mode in NAD_MODES:
        runs = []
        for _ in range(s.repeat):
            command = [sys.executable, "-m", "benchmarks.nad_rss", "--count", str(s.nads)]
            command += ["--policy", str(item.policy_file), "--mode", mode]
            runs.append(patterns.json_from(command, timeout=300))
        results["all"].extend(runs)
        median = dict(runs[0])
        for field in ("rss_before_nads_mib", "rss_mib", "hwm_mib", "seconds"):
            median[field] = statistics.median(r[field] for r in runs)
        if not all(r["lookups_ok"] and r["cached"] == s.nads for r in runs):
            raise BenchError(f"the NAD cache did not hold {s.nads} NADs: {runs[0]}")
        results[mode] = median
        log(
            f"{s.nads} NADs by {mode}: RSS {median['rss_mib']:.1f} MiB "
            f"(peak {median['hwm_mib']:.1f}, before {median['rss_before_nads_mib']:.1f})"
        )
    results["list_mib"] = results["informer"]["list_mib"]
    return results


def workers(session: Session, item: Prepared, s: Settings) -> dict[str, Any]:
    concurrency = max(s.concurrency)
    if not serve_supports_workers():
        log("serve --workers: not available")
        return {"available": False, "body": item.body.key, "concurrency": concurrency}
    runs = []
    for rep in range(1, s.repeat + 1):
        for count in (1, 2):
            server = session.webhook(item.policy_file, workers=count)
            checked_answer(server, item, session.certs.ca)
            with server.polling_rss():
                run_wrk(server.port, item.body_file, concurrency, s.warmup)
                cpu_before = server.cpu_seconds()
                result = run_wrk(server.port, item.body_file, concurrency, s.duration)
                cpu = server.cpu_seconds() - cpu_before
            result.update(
                workers=count,
                rep=rep,
                rss_peak_mib=server.peak_rss_kib / 1024,
                cpu_us_per_review=1e6 * cpu / max(1, result["requests"]),
            )
            runs.append(result)
            log(f"rep {rep} workers={count} {result['rps']:.0f} req/s")
            session.stop(server)
    rows = _median_rows(runs, ("workers",), MEDIAN_FIELDS)
    return {
        "available": True,
        "body": item.body.key,
        "concurrency": concurrency,
        "rows": rows,
        "runs": runs,
    }


def profile(session: Session, item: Prepared, s: Settings) -> dict[str, Any]:
    concurrency = 16 if 16 in s.concurrency else max(s.concurrency)
    server = session.webhook(item.policy_file)
    raw = session.work / "profile.txt"
    svg = session.work / "profile.svg"
    load_seconds = 2 * s.profile_seconds + 8
    load = subprocess.Popen(
        wrk_command(server.port, item.body_file, concurrency, load_seconds, s.wrk_threads),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        time.sleep(1.0)
        native, summary = profiling.record(server.pid, s.profile_seconds, raw, "raw")
        profiling.record(server.pid, s.profile_seconds, svg, "flamegraph")
    finally:
        if load.poll() is None:
            load.terminate()
        load.wait(timeout=30)
        session.stop(server)
    result = profiling.summarise(raw.read_text())
    result.update(seconds=s.profile_seconds, concurrency=concurrency, native=native, py_spy=summary)
    target = s.out / "profile-8rail.svg"
    if svg.stat().st_size < 1024 * 1024:
        shutil.copyfile(svg, target)
        result["svg"] = target.name
    else:
        result["notes"] = [f"The flamegraph ({svg.stat().st_size // 1024} KiB) was not kept."]
    log("profile: " + ", ".join(f"{x['layer']} {x['percent']:.0f}%" for x in result["layers"]))
    return result


# -- the whole run ------------------------------------------------------------------------------


def code_fingerprint(package: Path) -> str:
    """A short hash of the package's sources, to tell whether two runs measured the same code."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def snapshot_code(work: Path) -> dict[str, Any]:
    """Copy webhook/ aside and make every child process import the copy.

    The work tree is shared with engineers who commit while a run is going; without the copy a
    15-minute run would measure several versions of the server.
    """
    code = work / "code"
    shutil.copytree(
        ROOT / "webhook", code / "webhook", ignore=shutil.ignore_patterns("__pycache__")
    )
    os.environ["PYTHONPATH"] = os.pathsep.join([str(code), str(ROOT)])
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--", "webhook")),
        "fingerprint": code_fingerprint(code / "webhook"),
        "directory": code,
    }


def run(s: Settings, command: str) -> dict[str, Any]:
    wrk_binary()
    noise = CpuNoise()
    s.out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="gpu-rdma-bench-") as temp:
        work = Path(temp)
        code = snapshot_code(work)
        log(f"measuring webhook/ of {code['commit'][:10]}, fingerprint {code['fingerprint']}")
        bodies = [BUILDERS[key]() for key in s.bodies]
        headline_body = BUILDERS[HEADLINE]()
        (work / "certs").mkdir()
        session = Session(work)
        try:
            items = prepare(bodies, work)
            headline = next((i for i in items if i.body.key == HEADLINE), None)
            headline = headline or prepare([headline_body], work)[0]
            sections: dict[str, dict[str, Any]] = {}

            @contextlib.contextmanager
            def section(name: str) -> Iterator[None]:
                watch = CpuNoise()
                yield
                sections[name] = watch.finish()

            log(f"closed loop: bodies {', '.join(s.bodies)}; concurrency {s.concurrency}")
            with section("closed_loop"):
                closed = closed_loop(session, items, s)
            log(f"fixed rate {s.rate:g}/s")
            with section("fixed_rate"):
                fixed = patterns.at_rate(session, headline, s, 1, s.rate_connections)
            log(f"{s.rate:g}/s in bursts of {s.rate_burst} ({s.rate_burst} clients)")
            with section("burst_rate"):
                bursty = patterns.at_rate(session, headline, s, s.rate_burst, s.rate_burst)
            log(f"{s.burst_size} reviews at once on {s.burst_connections} connections")
            with section("job_burst"):
                burst = patterns.job_burst(session, headline, s)
            log("start-up time")
            ready = startup(session, headline, s)
            log(f"memory with {s.nads} NADs")
            nads = nad_memory(headline, s)
            worker_rows = workers(session, headline, s)
            if s.profile:
                log(f"profiling, twice {s.profile_seconds:g} s")
                profiled = profile(session, headline, s)
            else:
                profiled = {"skipped": "quick mode (or --no-profile)"}
        finally:
            session.stop_all()
    now = code_fingerprint(ROOT / "webhook")
    results: dict[str, Any] = {
        "meta": {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "commit": code["commit"],
            "dirty": code["dirty"],
            "code_fingerprint": code["fingerprint"],
            "changed_during_run": None
            if now == code["fingerprint"]
            else f"webhook/ changed during the run (now commit "
            f"{(_git('rev-parse', 'HEAD') or 'unknown')[:10]}, fingerprint {now}); "
            "the copy taken at the start was measured throughout",
            "command": command,
            "results_json": "results.json",
            "machine": describe_machine(),
            "settings": {
                key: (str(value) if isinstance(value, Path) else value)
                for key, value in vars(s).items()
            },
        },
        "bodies": [
            {
                "key": b.key,
                "title": b.title,
                "bytes": len(b.review),
                "expect_patch": b.expect_patch,
                "policy": b.policy_yaml,
            }
            for b in bodies
        ],
        "closed_loop": {"median": summarise_closed(closed, s), "runs": closed},
        "fixed_rate": {
            "rate": s.rate,
            "body": HEADLINE,
            "connections": s.rate_connections,
            "duration": s.rate_duration,
            "warmup": s.rate_warmup,
            "generator": "benchmarks/rateload.py, threads and blocking TLS sockets",
            "median": patterns.rate_medians(fixed),
            "runs": fixed,
        },
        "burst_rate": {
            "rate": s.rate,
            "body": HEADLINE,
            "clients": s.rate_burst,
            "duration": s.rate_duration,
            "warmup": s.rate_warmup,
            "median": patterns.rate_medians(bursty),
            "runs": bursty,
        },
        "job_burst": {
            "size": s.burst_size,
            "body": HEADLINE,
            "connections": s.burst_connections,
            "bursts": s.bursts,
            "gap": s.burst_gap,
            "median": patterns.burst_medians(burst),
            "runs": burst,
        },
        "startup": ready,
        "nad_memory": nads,
        "workers": worker_rows,
        "profile": profiled,
        "noise": {**noise.finish(), "sections": sections},
    }
    results["targets"] = goals.targets_table(results)
    results["capacity"] = report_patterns.capacity(results)
    write_outputs(results, s.out)
    return results


def write_outputs(results: dict[str, Any], out: Path) -> None:
    picture = "latency.png"
    drawn = report.plot(results, out / picture)
    if not drawn:
        log("matplotlib is not installed: no latency.png (benchmarks/run --install-only adds it)")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "RESULTS.md").write_text(report.markdown(results, picture if drawn else None))


def render(results_json: Path) -> None:
    write_outputs(json.loads(results_json.read_text()), results_json.resolve().parent)
    log(f"wrote {results_json.resolve().parent}/RESULTS.md again")


def _concurrency_list(text: str) -> list[int]:
    values = sorted({int(x) for x in text.split(",") if x.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("give positive connection counts, e.g. 1,16,64")
    return values


def _body_list(text: str) -> list[str]:
    keys = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [k for k in keys if k not in BUILDERS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"bodies are among {', '.join(BUILDERS)}")
    return keys


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Settings | None]:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run",
        description="Benchmark gpu-rdma-injector against an nginx floor "
        "(see benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run, to benchmarks/out")
    parser.add_argument("--install-only", action="store_true", help="install the tools and stop")
    parser.add_argument("--no-install", action="store_true", help="never install; fail if missing")
    parser.add_argument("--out", type=Path, help="output directory")
    parser.add_argument("--duration", type=float, help="whole seconds per point (10; quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per server (2; quick 1)")
    parser.add_argument("--repeat", type=int, help="repetitions, median reported (3; quick 1)")
    parser.add_argument("--concurrency", type=_concurrency_list, help="1,16,64 (quick 1,16)")
    parser.add_argument("--bodies", type=_body_list, help=f"among {','.join(BUILDERS)}")
    parser.add_argument("--rate", type=float, default=500.0, help="fixed rate, reviews/s (500)")
    parser.add_argument("--rate-duration", type=float, help="fixed-rate seconds (10; quick 2)")
    parser.add_argument("--bursts", type=int, help="bursts of 64 reviews measured (50; quick 10)")
    parser.add_argument("--starts", type=int, help="start-up measurements (5; quick 3)")
    parser.add_argument("--nads", type=int, default=10_000, help="NADs in the cache (10000)")
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="py-spy seconds (10)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (1)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="only write RESULTS.md and latency.png again from a results.json, beside it",
    )
    args = parser.parse_args(argv)
    if args.install_only or args.render:
        return args, None
    quick = args.quick

    def pick(value: Any, full: Any, short: Any) -> Any:
        return value if value is not None else (short if quick else full)

    settings = Settings(
        quick=quick,
        duration=pick(args.duration, 10.0, 1.0),
        warmup=pick(args.warmup, 2.0, 1.0),
        repeat=pick(args.repeat, 3, 1),
        concurrency=pick(args.concurrency, [1, 16, 64], [1, 16]),
        bodies=pick(args.bodies, list(FULL_BODIES), list(QUICK_BODIES)),
        rate=args.rate,
        rate_duration=pick(args.rate_duration, 10.0, 2.0),
        rate_warmup=0.5 if quick else 1.0,
        rate_connections=16,
        rate_burst=10,
        burst_size=64,
        burst_connections=16,
        bursts=pick(args.bursts, 50, 10),
        burst_gap=0.2,
        starts=pick(args.starts, 5, 3),
        nads=args.nads,
        profile_seconds=args.profile_seconds,
        profile=not (quick or args.no_profile),
        wrk_threads=args.wrk_threads,
        out=(args.out or (BENCH_DIR / "out" if quick else BENCH_DIR)).resolve(),
    )
    if min(settings.repeat, settings.starts, settings.nads, settings.bursts) < 1 or (
        settings.duration <= 0
    ):
        parser.error("--repeat, --duration, --starts, --nads and --bursts must be positive")
    return args, settings


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, settings = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)  # stop the servers on the way out
    if args.render:
        render(args.render)
        return 0
    try:
        if args.install_only or not args.no_install:
            install()
        if settings is None:
            log("everything is installed")
            return 0
        check_tools()
        command = shlex.join(["benchmarks/run", *argv])
        began = time.monotonic()
        results = run(settings, command)
    except BenchError as error:
        print(f"benchmarks/run: error: {error}", file=sys.stderr)
        return 2
    log(f"done in {time.monotonic() - began:.0f} s; wrote {settings.out}/RESULTS.md")
    for target in results["targets"]:
        verdict = "met" if target["met"] else "NOT met"
        log(f"{target['target']}: {target['measured']} (goal {target['goal']}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
