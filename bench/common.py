"""What the benchmarks share: the machine's description and how busy it is, CPU pinning, starting pixelpipe
roles, nginx and a private Kafka broker as processes, running and parsing ``wrk``, signing pixel tokens,
scraping Prometheus metrics, and writing results (JSON under ``bench/results/``, gitignored) and plots (PNG
under ``bench/plots/``, committed).

Benchmarks are not tests: nothing here fails because something is slow. What is broken (a process that does
not start, a tool that is missing and cannot be installed) raises `BenchError`, with what to do about it.
Every process started here is stopped here, by its own pid.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PLOTS = ROOT / "bench" / "plots"
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
PYTHON = sys.executable

# One fixed secret and key for every process of a run, so tokens signed here verify at any edge started here.
SECRET = "bench-secret-0123456789abcdef"  # noqa: S105 - a throwaway key for local runs
ACCOUNT = "bench"
API_KEY = "bench-key-0123456789"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
# The CPU the server under test gets, and the one for the load generator (and the Kafka broker).
SERVER_CPU = "0"
LOAD_CPU = "1"
_APT_PACKAGES = {
    "wrk": "wrk",
    "nginx": "nginx-light",
    "java": "default-jre-headless",
    "mvn": "maven",
    "unzip": "unzip",
}


class BenchError(RuntimeError):
    """Something the benchmark needs is broken or missing (not: something is slow)."""


# -- the machine ------------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]), idle


def per_cpu_times() -> dict[str, tuple[int, int]]:
    """{"cpu0": (total, idle), ...} in clock ticks since boot."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            fields = [int(v) for v in values]
            out[name] = (sum(fields[:8]), fields[3] + fields[4])
    return out


def per_cpu_busy(before: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Share of each CPU busy since ``before`` (from `per_cpu_times`)."""
    after = per_cpu_times()
    return {
        cpu: round(1 - (after[cpu][1] - idle) / max(1, after[cpu][0] - total), 3)
        for cpu, (total, idle) in before.items()
    }


def cpu_busy(sample_s: float = 1.0) -> float:
    """Share of all CPUs busy over the next ``sample_s`` seconds (0..1): what others are running right now,
    which the 1-minute load average reports only late."""
    total0, idle0 = _cpu_times()
    time.sleep(sample_s)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def conditions() -> dict[str, Any]:
    """How busy the machine was when a measurement started: recorded with every result."""
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_busy_before": round(cpu_busy(), 3),
    }


def wait_quiet(max_busy: float, timeout_s: float) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until other work uses less than ``max_busy`` of the CPUs; say so."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = conditions()
        if state["cpu_busy_before"] <= max_busy or time.monotonic() >= deadline:
            break
        print(f"  machine busy ({state['cpu_busy_before']:.0%} of the CPUs); waiting", flush=True)
        time.sleep(4)
    if state["cpu_busy_before"] > max_busy:
        print(
            f"  warning: {state['cpu_busy_before']:.0%} of the CPUs busy before the run "
            f"(load average {state['loadavg']}): these numbers are disturbed",
            flush=True,
        )
    return state


# -- tools ------------------------------------------------------------------------------------------------

_apt_updated = False


def ensure_tools(*names: str) -> list[str]:
    """Install what is missing with apt-get when running as root; return what is still missing (and say how
    to install it)."""
    global _apt_updated  # noqa: PLW0603 - `apt-get update` once per process
    missing = [n for n in names if shutil.which(n) is None and not Path(f"/usr/sbin/{n}").exists()]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = [_APT_PACKAGES.get(n, n) for n in missing]
        print(f"  installing {', '.join(packages)} with apt-get", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
            _apt_updated = True
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=False, env=env)
        missing = [n for n in names if shutil.which(n) is None and not Path(f"/usr/sbin/{n}").exists()]
    for name in missing:
        print(f"  missing: {name}; install it with: sudo apt-get install -y {_APT_PACKAGES.get(name, name)}")
    return missing


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise BenchError(f"{name} is not installed (sudo apt-get install -y {_APT_PACKAGES.get(name, name)})")
    return found


# -- processes --------------------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def spawn(
    cmd: Sequence[str], *, cpus: str | None, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(pinned(cmd, cpus), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15) -> None:
    """SIGTERM (a pixelpipe role drains and exits 0), SIGKILL if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def role_env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELPIPE_")}
    env.update(
        PIXELPIPE_SECRET=SECRET,
        PIXELPIPE_API_KEYS=f"{ACCOUNT}={API_KEY}",
        PIXELPIPE_DATA_DIR=str(data_dir),
    )
    env.update(settings)
    return env


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"exited with {proc.returncode} before {url} answered: {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer 200 within {timeout_s:.0f}s: {log.read_text()[-2000:]}")


@dataclass
class Role:
    """A ``pixelpipe`` process (as an operator runs it), pinned to ``cpus``."""

    args: list[str]
    env: dict[str, str]
    log: Path
    cpus: str | None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Role:
        self.port = self.port or free_ports(1)[0]
        cmd = [PYTHON, "-m", "pixelpipe.cli", *self.args, "--port", str(self.port), "--log-level", "warning"]
        self.proc = spawn(cmd, cpus=self.cpus, log=self.log, env=self.env)
        wait_http(f"{self.base}/readyz", self.proc, self.log)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("not started")
        return self.proc.pid

    def stop(self) -> None:
        stop(self.proc)


class PrivateKafka:
    """A private single-node broker: scripts/kafka.sh on free ports with ``home`` as its home, reusing the
    jars in .cache/kafka/lib; started and stopped on demand (its data is kept in between)."""

    def __init__(self, home: Path) -> None:
        # scripts/kafka.sh runs the broker on Java and needs Maven only to resolve the jars the first time.
        needed = ["java", "unzip"]
        if not list((ROOT / ".cache" / "kafka" / "lib").glob("kafka_*.jar")):
            needed.append("mvn")
        if missing := ensure_tools(*needed):
            raise BenchError(f"Kafka needs {', '.join(missing)}")
        self.port, controller = free_ports(2)
        self._env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(controller),
            "KAFKA_HOME_DIR": str(home),
            "KAFKA_PROBE_PYTHON": PYTHON,
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        done = subprocess.run(
            ["bash", str(KAFKA_SH), "up"], env=self._env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"Kafka did not start: {done.stderr[-2000:]}")

    def down(self) -> None:
        subprocess.run(["bash", str(KAFKA_SH), "down"], env=self._env, capture_output=True, check=False)


@contextlib.contextmanager
def kafka(home: Path, cpus: str | None) -> Iterator[str]:
    """A `PrivateKafka` in ``home``, its JVM pinned to ``cpus``; yields the bootstrap address and stops it
    afterwards."""
    broker = PrivateKafka(home)
    broker.up()
    try:
        if cpus:
            pin(kafka_pid(home), cpus)  # every thread of the JVM, not only the main one
        yield broker.bootstrap
    finally:
        broker.down()


NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location /o/ {{
            empty_gif;
            add_header Cache-Control "no-store, no-cache, must-revalidate, private";
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(workdir: Path, cpus: str | None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """nginx with one worker answering ``/o/*`` with ``empty_gif`` and writing an access log (as a tracking
    pixel server must); master and worker pinned to ``cpus``. Yields its base URL and the master process."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
    cmd = [tool("nginx"), "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    proc = spawn([*cmd, "-g", "daemon off;"], cpus=cpus, log=workdir / "nginx.out")
    try:
        wait_http(f"http://127.0.0.1:{port}/o/x.gif", proc, workdir / "nginx.out", timeout_s=20)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


def children(pid: int) -> list[int]:
    """A process's child processes (none once it has gone)."""
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (nginx: the master and its worker)."""
    total = process_cpu_seconds(pid)
    with contextlib.suppress(OSError):  # a child that exits meanwhile ends the count there, as before
        for child in children(pid):
            total += tree_cpu_seconds(child)
    return total


def pin(pid: int, cpus: str) -> None:
    """Move a running process and all its threads onto ``cpus`` (``"0,1"``: let it float again)."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


def kafka_pid(home: Path) -> int:
    return int((home / "kafka.pid").read_text().strip())


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds so far of a process's live threads, summed by thread name (``comm``): the
    Python thread(s) apart from chDB's worker threads (``QueryPipelineEx``, ``MergeMutate`` ...)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name, rest = task.joinpath("stat").read_text().split("(", 1)[1].rsplit(")", 1)
        except OSError:
            continue  # the thread ended meanwhile
        fields = rest.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


# -- tokens -----------------------------------------------------------------------------------------------


def pixel_paths(count: int, campaign_id: str = "bench") -> list[str]:
    """``/o/{token}.gif`` for ``count`` messages, signed with the run's secret (as the API would sign)."""
    from pixelpipe.settings import parse_secret
    from schemas.tokens import Claim, TokenKind, sign

    keyring = parse_secret(SECRET)
    sent_at = int(time.time()) - 3600
    return [
        "/o/" + sign(Claim(TokenKind.OPEN, ACCOUNT, campaign_id, f"msg-{i:06d}", sent_at), keyring) + ".gif"
        for i in range(count)
    ]


# -- wrk --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    connections: int
    paced_rps: float | None = None  # the rate asked for by a paced run (None: as fast as possible)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if m is None:
        raise BenchError(f"cannot read the duration {text!r} in wrk's output")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(text: str, connections: int, paced_rps: float | None = None) -> WrkResult:
    """Read wrk's ``--latency`` report."""
    pct = {int(m.group(1)): _ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", text, re.M)}
    done = re.search(r"(\d+) requests in ([\d.]+\w+),", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    latency_max = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    if done is None or rps is None or set(pct) != {50, 75, 90, 99}:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        requests=int(done.group(1)),
        duration_s=_ms(done.group(2)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=pct.get(50, 0.0),
        p75_ms=pct.get(75, 0.0),
        p90_ms=pct.get(90, 0.0),
        p99_ms=pct.get(99, 0.0),
        max_ms=_ms(latency_max.group(1)) if latency_max else 0.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        connections=connections,
        paced_rps=paced_rps,
    )


_WRK_PATHS_LUA = """\
-- Rotate over many messages' pixels, as real traffic does; optionally pace each connection.
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local n = 0
request = function()
    n = n + 1
    return wrk.format(nil, paths[(n %% #paths) + 1])
end
%(delay)s
"""


def run_wrk(
    base: str | Sequence[str],
    paths: Sequence[str],
    *,
    duration_s: float,
    connections: int = 64,
    cpus: str | None = LOAD_CPU,
    paced_rps: float | None = None,
) -> WrkResult:
    """``wrk -t1 -cN -d..s --latency`` with a browser User-Agent, rotating over ``paths``, pinned to ``cpus``.

    ``base``: one URL, or several (one wrk process each, connections split evenly, results summed; the
    latency percentiles are then the worst of the processes'). ``paced_rps``: each connection waits a random
    time between requests so that all of them together ask about that rate (wrk's ``delay()``; the achieved
    rate is a little lower, since each connection also waits for its answer): latency at a given load rather
    than at saturation."""
    bases = [base] if isinstance(base, str) else list(base)
    per = max(1, connections // len(bases))
    with tempfile.TemporaryDirectory(prefix="pixelpipe-wrk-") as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        delay = ""
        if paced_rps:
            # A random wait (uniform, mean connections/rate) rather than a fixed one: fixed waits keep all
            # connections in step, so requests would arrive in bursts of `connections` at once.
            mean_ms = max(1, round(connections * 1000 / paced_rps))
            delay = f"delay = function() return math.random(0, {2 * mean_ms}) end"
        script = Path(tmp) / "paths.lua"
        script.write_text(_WRK_PATHS_LUA % {"paths": paths_file, "delay": delay})
        procs = [
            subprocess.Popen(
                pinned(
                    [
                        tool("wrk"), "-t1", f"-c{per}", f"-d{duration_s:g}s", "--latency", "--timeout", "5s",
                        "-H", f"User-Agent: {BROWSER}", "-s", str(script), url,
                    ],
                    cpus,
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for url in bases
        ]  # fmt: skip
        results = [parse_wrk(p.communicate()[0], per, paced_rps) for p in procs]
    if len(results) == 1:
        return results[0]
    return WrkResult(
        requests=sum(r.requests for r in results),
        duration_s=max(r.duration_s for r in results),
        rps=sum(r.rps for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p75_ms=max(r.p75_ms for r in results),
        p90_ms=max(r.p90_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        connections=per * len(results),
        paced_rps=paced_rps,
    )


# -- metrics ----------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(base: str) -> dict[str, float]:
    """``/metrics`` as {series (name with labels): value}."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metric(series: dict[str, float], name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the series of ``name`` whose labels include ``labels``."""
    labels = labels or {}
    total = 0.0
    for key, value in series.items():
        metric_name, _, rest = key.partition("{")
        if metric_name == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def histogram_quantile(series: dict[str, float], name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (0..1) of a Prometheus histogram."""
    buckets = []
    for key, value in series.items():
        m = re.fullmatch(rf'{re.escape(name)}_bucket\{{.*le="([^"]+)".*\}}', key)
        if m:
            buckets.append((float(m.group(1)), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    return next(le for le, count in buckets if count >= target)


# -- results ----------------------------------------------------------------------------------------------


def revision() -> str:
    """The commit measured, with ``+dirty`` when the tree has uncommitted changes to tracked files."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=False)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, capture_output=True, check=False)
    return (head.stdout.decode().strip() or "unknown") + ("+dirty" if dirty.returncode else "")


def write_result(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/{name}.json`` (the latest run) and a time-stamped copy; returns the first."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "revision": revision(), "machine": machine(), **data}
    text = json.dumps(body, indent=2, default=str) + "\n"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{name}-{stamp}.json").write_text(text)
    latest = RESULTS / f"{name}.json"
    latest.write_text(text)
    print(f"  wrote {latest.relative_to(ROOT)}", flush=True)
    return latest


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), with the plots directory made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    return plt


def save_plot(fig: Any, name: str) -> Path:
    path = PLOTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"  wrote {path.relative_to(ROOT)}", flush=True)
    return path


def argparser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every benchmark takes: ``--full`` (the issue's durations) and ``--wait-quiet``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full durations (default: quick)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the machine to be idle (other work below 15%% of the CPUs) first",
    )
    return parser


def scratch(prefix: str) -> Path:
    """A temporary directory for one benchmark's processes (data dirs, logs); kept when BENCH_KEEP is set."""
    return Path(tempfile.mkdtemp(prefix=f"pixelpipe-{prefix}-"))


def cleanup(path: Path) -> None:
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(path, ignore_errors=True)


def fmt_rate(value: float) -> str:
    return f"{value / 1000:.1f}k/s" if value >= 1000 else f"{value:.0f}/s"
