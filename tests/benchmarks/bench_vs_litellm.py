"""Ledgergate against the LiteLLM proxy, side by side, on this machine (issue 11 item 4).

    .venv/bin/python -m tests.benchmarks.bench_vs_litellm                  # 3 rounds, 5 s each
    .venv/bin/python -m tests.benchmarks.bench_vs_litellm --rounds 5 --seconds 8 --workers 1 2

What it does:
- installs the LiteLLM proxy pinned to 1.106.2 (never 1.107.0, a compromised release) in its
  own virtual environment, `.bench/litellm-venv`, outside the product's dependencies, on
  first run (a later run reuses it after checking the pinned version is what is installed);
- starts one fast fake OpenAI upstream (tests/benchmarks/fast_upstream.py), which both
  gateways call, and measures it directly too (the "direct" latency overheads subtract);
- starts Ledgergate (`serve --workers N`, PostgreSQL in a throwaway database, every event
  durable before the provider is called and after it answers) and LiteLLM
  (`litellm --num_workers N`, no database) with the same worker count, for N in --workers;
- drives both with the same load generator, wrk (Debian's `wrk`), the same body, the same
  durations, in interleaved rounds (the order of the two alternates every round), at
  concurrency 1 and 32, non-streaming and streaming;
- prints req/s, p50/p99, the p50 overhead over the direct call, the Ledgergate/LiteLLM
  ratios with their spread over rounds (median [min–max]), the CPU milliseconds each gateway
  spent per request, the 2-worker/1-worker scaling, the first request after /ready, the RSS
  of every process and their PSS together (forked workers share pages), and the load
  average.

The machine is shared: read the figures beside the load average printed with them. The CPU
per request (utime + stime of every process of the gateway, from /proc, over the requests
wrk counted) does not depend on what else runs: it is the honest figure here.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.serving import free_port
from tests.support.postgres import temporary_database

ROOT = Path(__file__).resolve().parents[2]
LITELLM_VERSION = "1.106.2"
LITELLM_FORBIDDEN_VERSIONS = ("1.107.0",)  # a compromised release: never install it
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
MODEL = "gpt-4o-mini"
# LiteLLM refuses to start without a master key; with one, it authenticates every request
# (in memory, no database), as Ledgergate does with its keys.
LITELLM_MASTER_KEY = "sk-" + secrets.token_hex(32)
PROMPT = "Hello, how are you today?"
STARTUP_S_MAX = 300.0  # two LiteLLM workers start slowly on a loaded 2-core machine
CONCURRENCIES = (1, 32)
MODES = ("json", "stream")
WARMUP_S = 2
SERVE_MODULE, SERVE_ARGS = "gateway.workers", ()
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the LiteLLM environment -----------------------------------------------------------------


def litellm_python() -> Path:
    """The LiteLLM venv's interpreter, creating the venv and installing the pinned proxy on
    first use; refuses anything but the pinned version."""
    if LITELLM_VERSION in LITELLM_FORBIDDEN_VERSIONS:  # a guard against a careless bump
        raise SystemExit(f"litellm {LITELLM_VERSION} is a compromised release")
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {LITELLM_VENV} with litellm[proxy]=={LITELLM_VERSION} (first run only)")
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
        )
    installed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if installed != LITELLM_VERSION or installed in LITELLM_FORBIDDEN_VERSIONS:
        raise SystemExit(
            f"{LITELLM_VENV} holds litellm {installed}, not {LITELLM_VERSION}: remove it and rerun"
        )
    return python


# --- processes -------------------------------------------------------------------------------


def wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_S_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited during start-up ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not open its port in time")


def wait_http(url: str, process: subprocess.Popen[bytes], what: str) -> float:
    """Poll `url` until it answers 200; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_S_MAX:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited during start-up ({process.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} was not ready in time ({url})")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    index = 0
    while index < len(pids):
        try:
            children = Path(f"/proc/{pids[index]}/task/{pids[index]}/children").read_text()
        except OSError:
            children = ""
        pids.extend(int(child) for child in children.split())
        index += 1
    return pids


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process. RSS counts every page it maps, the pages it shares with
    others (a forked worker's preloaded models) in full; PSS divides each shared page among
    the processes that map it, so the PSS of a gateway's processes add up to what they take."""
    found = {"Rss": 0.0, "Pss": 0.0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in found:
                found[name] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return found["Rss"], found["Pss"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(part.decode(errors="replace") for part in raw if part)
    for marker in ("projections run", "multiprocessing", "serve", "litellm"):
        if marker in text:
            return marker
    if "gateway.workers" in text:  # a worker forked by `serve --workers N` (its parent's line)
        return "worker"
    return Path(text.split(" ")[0]).name if text else "?"


@dataclass
class Target:
    name: str
    base_url: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    ready_s: float = 0.0
    first_request_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def rss(self) -> list[tuple[str, float, float]]:
        """(what, RSS MB, PSS MB) of every process of the gateway, its supervisor first."""
        tree = process_tree(self.process.pid)
        return [
            ("supervisor" if pid == self.process.pid and len(tree) > 1 else command_line(pid),
             *memory_mb(pid))
            for pid in tree
        ]  # fmt: skip

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of (every process of the gateway, its serving processes only:
        all but Ledgergate's projection worker)."""
        total = serving = 0.0
        for pid in process_tree(self.process.pid):
            used = cpu_seconds(pid)
            total += used
            if command_line(pid) != "projections run":
                serving += used
        return total, serving


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"ledgergate {' '.join(args[:2])} failed: {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ledgergate_env(database_url: str, upstream: str, data_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LEDGERGATE_DATABASE_URL": database_url,
        "LEDGERGATE_DATA_DIR": data_dir,
        "LEDGERGATE_OPENAI_BASE_URL": upstream + "/v1",
        "LEDGERGATE_OPENAI_API_KEY": "sk-bench",
        "LEDGERGATE_LOG_LEVEL": "WARNING",
        "LEDGERGATE_ACCESS_LOG": "0",
    }


def ledgergate_tenant(env: dict[str, str]) -> dict[str, str]:
    project = cli(env, "project", "create", "--name", "bench", "--currency", "USD")
    key = cli(env, "key", "create", "--project", project["project_id"])
    cli(
        env,
        "topup",
        "--project",
        project["project_id"],
        "--amount",
        "1000000.00",
        "--currency",
        "USD",
        "--reference",
        "bench",
    )
    cli(
        env,
        "price",
        "set",
        "--model",
        MODEL,
        "--input-per-mtok",
        "0.15",
        "--output-per-mtok",
        "0.60",
        "--currency",
        "USD",
        "--effective-from",
        "2026-01-01T00:00:00Z",
    )
    return {"Authorization": f"Bearer {key['api_key']}", "X-User-Id": "bench"}


def start_ledgergate(env: dict[str, str], headers: dict[str, str], workers: int) -> Target:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            SERVE_MODULE,
            *SERVE_ARGS,
            "--port",
            str(port),
            "--workers",
            str(workers),
            # As in production (docker-compose.yml): the views are projected by their own
            # process, for 1 and 2 workers alike, so the two counts compare like for like.
            "--projection-worker",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_port(port, process, "ledgergate")
    ready_s = wait_http(base + "/ready", process, "ledgergate")
    if workers > 1:
        # The socket is shared: /ready answered by one worker. Wait for every one of them.
        deadline = time.monotonic() + STARTUP_S_MAX
        while len([p for p in process_tree(process.pid) if p != process.pid]) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("ledgergate workers did not all start")
            time.sleep(0.1)
    target = Target(f"ledgergate x{workers}", base, headers, process, ready_s=ready_s)
    target.first_request_ms = first_request_ms(target)
    return target


def start_litellm(python: Path, upstream: str, workers: int, work: Path) -> Target:
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map at start
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    env.pop("PYTHONPATH", None)
    litellm = python.with_name("litellm")
    process = subprocess.Popen(
        [
            str(litellm),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_port(port, process, "litellm")
    ready_s = wait_http(base + "/health/liveliness", process, "litellm")
    target = Target(
        f"litellm x{workers}",
        base,
        {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
        process,
        ready_s=ready_s,
    )
    target.first_request_ms = first_request_ms(target)
    return target


def body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 64,
            "stream": stream,
        }
    ).encode()


def first_request_ms(target: Target) -> float:
    """The first request after ready (a fresh connection, one non-streaming completion), and,
    just before it, the same request straight to the upstream on a fresh connection: their
    difference is the gateway's first-request overhead (kept in target.extra["first_direct_ms"]).
    The upstream's address is read where the gateway was given it: Ledgergate's environment,
    LiteLLM's config file."""

    def post(url: str, headers: dict[str, str]) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = httpx.post(
            url,
            content=body(False),
            headers={**headers, "content-type": "application/json"},
            timeout=60,
        )
        return (time.perf_counter() - started) * 1000, response

    def upstream_v1() -> str:
        environ = Path(f"/proc/{target.process.pid}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"LEDGERGATE_OPENAI_BASE_URL="):
                return item.split(b"=", 1)[1].decode()
        config = Path(target.process.args[target.process.args.index("--config") + 1])
        return next(
            line.split("api_base:", 1)[1].strip()
            for line in config.read_text().splitlines()
            if "api_base:" in line
        )

    direct_ms, direct = post(upstream_v1() + "/chat/completions", {})
    if direct.status_code != 200:
        raise SystemExit(f"{target.name}: direct first request HTTP {direct.status_code}")
    target.extra["first_direct_ms"] = direct_ms
    elapsed, response = post(target.base_url + "/v1/chat/completions", target.headers)
    if response.status_code != 200:
        raise SystemExit(
            f"{target.name}: first request HTTP {response.status_code}: {response.text[:300]}"
        )
    return elapsed


# --- the load generator ----------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"non2xx\\":%d,\\"connect\\":%d," ..
    "\\"read\\":%d,\\"write\\":%d,\\"timeout\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d}}\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(work: Path, name: str, headers: dict[str, str], stream: bool) -> Path:
    lines = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    path = work / f"{name.replace(' ', '_')}-{'stream' if stream else 'json'}.lua"
    path.write_text(
        WRK_SCRIPT.format(body=lua_string(body(stream).decode()), headers="\n".join(lines))
    )
    return path


@dataclass
class Measured:
    rps: float
    p50_ms: float
    p99_ms: float
    failures: int
    requests: int = 0
    cpu_ms: float = 0.0  # CPU per request, every process of the gateway
    serving_cpu_ms: float = 0.0  # the same, its serving processes only


def measure_cpu(target: Target, script: Path, concurrency: int, seconds: int) -> Measured:
    """One wrk measurement of `target` with the CPU its processes spent on it."""
    total_before, serving_before = target.cpu()
    measured = wrk(target.base_url, script, concurrency, seconds)
    total_after, serving_after = target.cpu()
    if measured.requests:
        measured.cpu_ms = (total_after - total_before) * 1000 / measured.requests
        measured.serving_cpu_ms = (serving_after - serving_before) * 1000 / measured.requests
    return measured


def wrk(url: str, script: Path, concurrency: int, seconds: int) -> Measured:
    threads = min(concurrency, 2)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url + "/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary: {done.stdout[-400:]} {done.stderr[-400:]}")
    data = json.loads(line[len("WRKJSON ") :])
    failures = sum(data[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
    return Measured(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        failures=failures,
        requests=data["requests"],
    )


# --- the run ---------------------------------------------------------------------------------


@contextmanager
def upstream_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.fast_upstream", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_port(port, process, "fast upstream")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    python = litellm_python()
    results: dict[str, Any] = {"rows": [], "starts": [], "load": [], "errors": []}
    work = Path(tempfile.mkdtemp(prefix="lg-vs-litellm-"))
    with upstream_process() as upstream, temporary_database("lg_bench") as database_url:
        env = ledgergate_env(database_url, upstream, str(work / "data"))
        headers = ledgergate_tenant(env)
        for workers in arguments.workers:
            log(f"workers={workers}: starting ledgergate and litellm")
            try:
                measure_workers(results, arguments, env, headers, python, upstream, workers, work)
            except SystemExit as error:  # one worker count failing must not lose the others
                log(f"workers={workers} not measured: {error}")
                results["errors"].append(f"workers={workers}: {error}")
    shutil.rmtree(work, ignore_errors=True)
    return results


def measure_workers(
    results: dict[str, Any],
    arguments: argparse.Namespace,
    env: dict[str, str],
    headers: dict[str, str],
    python: Path,
    upstream: str,
    workers: int,
    work: Path,
) -> None:
    direct_scripts = {s: wrk_script(work, "direct", {}, s) for s in (False, True)}
    lg = start_ledgergate(env, headers, workers)
    try:
        lite = start_litellm(python, upstream, workers, work)
    except BaseException:
        stop(lg.process)
        raise
    try:
        for target in (lg, lite):
            results["starts"].append(
                {
                    "name": target.name,
                    "ready_s": target.ready_s,
                    "first_ms": target.first_request_ms,
                    "first_direct_ms": target.extra.get("first_direct_ms", 0.0),
                    "rss": target.rss(),
                }
            )
        scripts = {
            (t.name, s): wrk_script(work, t.name, t.headers, s)
            for t in (lg, lite)
            for s in (False, True)
        }
        for target in (lg, lite):  # warm both (connection pools, first-use paths)
            for stream in (False, True):
                wrk(target.base_url, scripts[(target.name, stream)], 8, WARMUP_S)
        samples: dict[tuple[str, str, int], list[Measured]] = {}
        for round_number in range(arguments.rounds):
            results["load"].append(os.getloadavg()[0])
            order = (lg, lite) if round_number % 2 == 0 else (lite, lg)
            for mode in MODES:
                stream = mode == "stream"
                for concurrency in CONCURRENCIES:
                    direct = wrk(upstream, direct_scripts[stream], concurrency, arguments.seconds)
                    samples.setdefault(("direct", mode, concurrency), []).append(direct)
                    for target in order:
                        measured = measure_cpu(
                            target,
                            scripts[(target.name, stream)],
                            concurrency,
                            arguments.seconds,
                        )
                        kind = "lg" if target is lg else "litellm"
                        samples.setdefault((kind, mode, concurrency), []).append(measured)
                    log(
                        f"  round {round_number + 1}/{arguments.rounds} {mode:6} "
                        f"c={concurrency:<2}: lg {samples[('lg', mode, concurrency)][-1].rps:7.1f}"
                        f" req/s, litellm {samples[('litellm', mode, concurrency)][-1].rps:7.1f}"
                        f" req/s (load {os.getloadavg()[0]:.1f})"
                    )
        for mode in MODES:
            for concurrency in CONCURRENCIES:
                results["rows"].append(summarise(workers, mode, concurrency, samples))
        for target in (lg, lite):
            results["starts"].append({"name": target.name + " (after load)", "rss": target.rss()})
    finally:
        stop(lg.process)
        stop(lite.process)


def summarise(
    workers: int, mode: str, concurrency: int, samples: dict[tuple[str, str, int], list[Measured]]
) -> dict[str, Any]:
    lg = samples[("lg", mode, concurrency)]
    lite = samples[("litellm", mode, concurrency)]
    direct = samples[("direct", mode, concurrency)]
    rps_ratio = [a.rps / b.rps for a, b in zip(lg, lite, strict=True) if b.rps]
    lg_overhead = [a.p50_ms - d.p50_ms for a, d in zip(lg, direct, strict=True)]
    lite_overhead = [b.p50_ms - d.p50_ms for b, d in zip(lite, direct, strict=True)]
    overhead_ratio = [a / b for a, b in zip(lg_overhead, lite_overhead, strict=True) if b > 0]
    return {
        "workers": workers,
        "mode": mode,
        "concurrency": concurrency,
        "lg_rps": statistics.median(m.rps for m in lg),
        "litellm_rps": statistics.median(m.rps for m in lite),
        "rps_ratio": rps_ratio,
        "lg_p50": statistics.median(m.p50_ms for m in lg),
        "lg_p99": statistics.median(m.p99_ms for m in lg),
        "litellm_p50": statistics.median(m.p50_ms for m in lite),
        "litellm_p99": statistics.median(m.p99_ms for m in lite),
        "direct_p50": statistics.median(m.p50_ms for m in direct),
        "lg_overhead": statistics.median(lg_overhead),
        "litellm_overhead": statistics.median(lite_overhead),
        "overhead_ratio": overhead_ratio,
        "lg_cpu_ms": statistics.median(m.cpu_ms for m in lg),
        "lg_serving_cpu_ms": statistics.median(m.serving_cpu_ms for m in lg),
        "litellm_cpu_ms": statistics.median(m.cpu_ms for m in lite),
        "lg_failures": sum(m.failures for m in lg),
        "litellm_failures": sum(m.failures for m in lite),
    }


def print_report(results: dict[str, Any]) -> None:
    header = (
        f"{'w':>1} {'mode':6} {'c':>2} | {'LG req/s':>8} {'LL req/s':>8} {'LG/LL req/s':>20} | "
        f"{'LG p50':>7} {'LG p99':>7} {'LL p50':>7} {'LL p99':>7} | {'LG ovh':>6} {'LL ovh':>6} "
        f"{'LG/LL ovh p50':>20} | {'CPU ms/req LG (srv) LL':>22} | {'fail LG/LL':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in results["rows"]:
        print(
            f"{row['workers']:>1} {row['mode']:6} {row['concurrency']:>2} | {row['lg_rps']:>8.1f} "
            f"{row['litellm_rps']:>8.1f} {spread(row['rps_ratio']):>20} | {row['lg_p50']:>7.2f} "
            f"{row['lg_p99']:>7.2f} {row['litellm_p50']:>7.2f} {row['litellm_p99']:>7.2f} | "
            f"{row['lg_overhead']:>6.2f} {row['litellm_overhead']:>6.2f} "
            f"{spread(row['overhead_ratio']):>20} | {row['lg_cpu_ms']:>6.2f} ({row['lg_serving_cpu_ms']:>5.2f}) "
            f"{row['litellm_cpu_ms']:>6.2f}     | {row['lg_failures']:>4}/{row['litellm_failures']:<4}"
        )
    print(
        "(ms; w = workers per gateway; c = concurrency; LG = Ledgergate on PostgreSQL, LL = LiteLLM "
        "proxy; ratios are median [min–max] over rounds; ovh = p50 − the direct call's p50; CPU "
        "ms/req = utime + stime of all the gateway's processes per request, (srv) = Ledgergate's "
        "serving processes without its projection worker)"
    )
    by_key = {(r["workers"], r["mode"], r["concurrency"]): r for r in results["rows"]}
    scaling = []
    for mode in MODES:
        one, two = by_key.get((1, mode, 32)), by_key.get((2, mode, 32))
        if one and two:
            scaling.append(
                f"{mode}: LG {two['lg_rps'] / one['lg_rps']:.2f}x, "
                f"LL {two['litellm_rps'] / one['litellm_rps']:.2f}x"
            )
    if scaling:
        print("2 workers / 1 worker at c=32: " + "; ".join(scaling))
    for start in results["starts"]:
        rss = ", ".join(f"{name} {mb:.0f} MB" for name, mb, _pss in start["rss"])
        rss += f" (PSS: together {sum(pss for _name, _mb, pss in start['rss']):.0f} MB)"
        if "first_ms" in start:
            print(
                f"{start['name']:14}: ready after {start['ready_s']:.1f} s; first request "
                f"{start['first_ms']:.1f} ms (first request overhead = first - direct first "
                f"= {start['first_ms'] - start['first_direct_ms']:.1f} ms); RSS {rss}"
            )
        else:
            print(f"{start['name']:14}: RSS {rss}")
    for error in results["errors"]:
        print(f"NOT MEASURED: {error}")
    loads = results["load"]
    print(
        f"load average (1 min) at the rounds: {', '.join(f'{x:.1f}' for x in loads)} "
        f"on {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    arguments = parser.parse_args()
    print_report(run(arguments))


if __name__ == "__main__":
    main()
