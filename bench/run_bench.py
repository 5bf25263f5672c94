#!/usr/bin/env python3
"""Runs every measurement of the benchmark and writes results.json.

Called by bench/run.sh after setup, build and workload generation (see
BENCHMARKS.md); standard library only. For each repetition:

  1. the raw limit: bench/raw_onnxruntime.rs for both workloads at batch
     1, 2, 4, 8, 16, 32 (1, 8 and 32 are reported; the others let a server's
     effective batch be interpolated);
  2. this server (target/release/tritonrs) with the four Triton models
     (<workload>_batching, <workload>_nobatching), each first checked against
     the reference outputs of generate_workloads.py: perf_analyzer over gRPC and
     over HTTP, and bench/loadgen.rs over gRPC, at each concurrency, the two
     models of a workload one right after the other at each point; the
     effective batch of each measurement is the change of inference_count /
     execution_count in /v2/models/{m}/stats across it; the batched W2 point
     at concurrency 32 is bracketed by two more raw runs at batch 32, one
     right before it and one right after, for its share of the raw limit;
  3. Seldon MLServer with bench/mlserver/runtime.py and adaptive batching,
     checked against the reference in the same way: bench/loadgen.rs over its
     gRPC port (perf_analyzer cannot drive it: it
     needs Triton's ModelConfig RPC, which MLServer does not serve; each
     repetition records perf_analyzer's answer); the effective batch comes
     from the runtime's counters.

loadgen runs twice per point: over one HTTP/2 connection (as tritonclient
and perf_analyzer's gRPC client use one channel) and over eight.

Servers listen on 127.0.0.1 on free ports and are started and stopped by
PID. Every generator run is bounded in time (and loadgen in request count).
For each measurement the CPU time of the server (its whole process tree), of
the generator, and of everything else on the machine is recorded, because
on this 2-core machine they all share the cores.
"""

import argparse
import csv
import datetime
import functools
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes and CPU accounting ------------------------------------------


def machine_cpu():
    """Jiffies from /proc/stat: (user+nice+system, irq+softirq, steal, idle+iowait)."""
    with open("/proc/stat") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy": user + nice + system, "irq": irq + softirq, "steal": steal, "idle": idle + iowait}


def process_tree(root):
    children = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def tree_cpu(root):
    """utime + stime jiffies of a process and its descendants."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU used by the server, the generator and the rest during a span."""

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.wall = time.monotonic()
        self.machine = machine_cpu()
        self.server = tree_cpu(server_pid)
        self.children = children_cpu()

    def stop(self):
        wall = time.monotonic() - self.wall
        machine = machine_cpu()
        server = (tree_cpu(self.server_pid) - self.server) / HZ
        generator = children_cpu() - self.children
        busy = (machine["busy"] - self.machine["busy"]) / HZ
        cores = lambda seconds: round(seconds / wall, 3) if wall > 0 else None  # noqa: E731
        return {
            "wall_s": round(wall, 3),
            "server_cores": cores(server),
            "generator_cores": cores(generator),
            "other_cores": cores(max(busy - server - generator, 0.0)),
            "irq_cores": cores((machine["irq"] - self.machine["irq"]) / HZ),
            "steal_cores": cores((machine["steal"] - self.machine["steal"]) / HZ),
        }


def wait_until_quiet(threshold, max_wait, sample=2.0):
    """Waits (bounded) until the machine is nearly idle; returns what it saw."""
    waited, started = 0.0, time.monotonic()
    while True:
        before = machine_cpu()
        time.sleep(sample)
        after = machine_cpu()
        total = sum(after[key] - before[key] for key in after)
        busy = (after["busy"] + after["irq"] - before["busy"] - before["irq"]) / max(total, 1)
        waited = time.monotonic() - started
        if busy <= threshold or waited >= max_wait:
            if busy > threshold:
                log(f"the machine is still {busy:.0%} busy after {waited:.0f} s; measuring anyway")
            return {"busy_fraction": round(busy, 3), "waited_s": round(waited, 1)}
        log(f"other work keeps the machine {busy:.0%} busy; waiting")
        time.sleep(min(8, max(max_wait - waited, 0)))


class QuietGate:
    """Before each measurement: a short look at the machine, and a wait
    (bounded per measurement and for the whole run) while other processes
    keep it busy; the servers are idle between measurements."""

    def __init__(self, threshold, per_wait, total_budget):
        self.threshold, self.per_wait, self.budget = threshold, per_wait, total_budget

    def __call__(self):
        started = time.monotonic()
        seen = wait_until_quiet(self.threshold, min(self.per_wait, max(self.budget, 0)), sample=0.5)
        self.budget -= time.monotonic() - started
        return seen


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process started and stopped by PID."""

    def __init__(self, name, command, env, log_path):
        self.name = name
        self.log_file = open(log_path, "w")
        log(f"starting {name}: {' '.join(map(str, command))}")
        self.process = subprocess.Popen(
            [str(part) for part in command],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.process.pid

    def wait_ready(self, urls, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_file.name}")
            if all(http_status(url) == 200 for url in urls):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} was not ready within {timeout} s; see {self.log_file.name}")

    def stop(self):
        descendants = [pid for pid in process_tree(self.pid) if pid != self.pid]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for 30 s; killing it")
                self.process.kill()
                self.process.wait(timeout=10)
        # Workers that outlived their parent (MLServer's inference pool).
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log_file.close()
        log(f"stopped {self.name} (exit status {self.process.returncode})")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


# --- answers --------------------------------------------------------------------

# Largest error allowed in an FP32 output, relative to the largest reference
# value: float32 arithmetic differs from the float64 reference by about
# 1e-6, and GPUs may run FP32 matrix products in TF32 (about 1e-3).
FP32_TOLERANCE = 1e-2


def check_outputs(http_port, model, workload_spec):
    """Sends the reference inputs of generate_workloads.py as one request
    (KServe v2 JSON over HTTP) and compares the answer with the reference
    outputs; raises if it is wrong. Returns the largest relative error."""
    reference = workload_spec["reference"]
    inputs = []
    for name, datatype, _ in workload_spec["inputs"]:
        rows = reference["inputs"][name]
        inputs.append({"name": name, "datatype": datatype, "shape": [len(rows), len(rows[0])],
                       "data": [value for row in rows for value in row]})  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v2/models/{model}/infer",
        data=json.dumps({"inputs": inputs}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = {output["name"]: output["data"] for output in json.load(response)["outputs"]}
    worst = 0.0
    for name, rows in reference["outputs"].items():
        expected = [value for row in rows for value in row]
        got = answer.get(name)
        if got is None or len(got) != len(expected):
            raise RuntimeError(f"{model}: output {name} has {len(got or [])} values, expected {len(expected)}")
        scale = max(abs(value) for value in expected) or 1.0
        error = max(abs(a - b) for a, b in zip(got, expected)) / scale
        worst = max(worst, error)
        if error > FP32_TOLERANCE:
            raise RuntimeError(f"{model}: output {name} is off by {error:.2e} of its largest value")
    return worst


# --- batch counters -----------------------------------------------------------


def triton_counters(http_port, model):
    stats = http_json(f"http://127.0.0.1:{http_port}/v2/models/{model}/stats")["model_stats"][0]
    inference = stats["inference_stats"]
    return {
        "inference_count": int(stats["inference_count"]),
        "execution_count": int(stats["execution_count"]),
        "queue_ns": int(inference["queue"]["ns"]),
        "compute_infer_ns": int(inference["compute_infer"]["ns"]),
        "success_count": int(inference["success"]["count"]),
        "success_ns": int(inference["success"]["ns"]),
    }


def mlserver_counters(stats_dir, model):
    totals = {"inference_count": 0, "execution_count": 0}
    for path in pathlib.Path(stats_dir).glob(f"{model}.*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in totals:
            totals[key] += int(data[key])
    return totals


def counter_delta(before, after):
    delta = {key: after[key] - before[key] for key in after}
    executions = delta.get("execution_count", 0)
    delta["avg_batch"] = round(delta["inference_count"] / executions, 3) if executions else None
    if executions and "queue_ns" in delta and delta.get("success_count"):
        delta["avg_queue_us"] = round(delta["queue_ns"] / delta["success_count"] / 1000, 1)
        # Triton's inference_stats count each request of a batch with the
        # batch's whole duration, so per request this is the time of the
        # batch it ran in, not a share of it.
        delta["avg_compute_infer_us"] = round(delta["compute_infer_ns"] / delta["success_count"] / 1000, 1)
        delta["avg_server_us"] = round(delta["success_ns"] / delta["success_count"] / 1000, 1)
    return delta


# --- generators -----------------------------------------------------------------


def run_command(command, timeout, env=None, stdout_path=None):
    started = time.monotonic()
    try:
        completed = subprocess.run(
            [str(part) for part in command],
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        text = lambda data: data.decode(errors="replace") if isinstance(data, bytes) else (data or "")  # noqa: E731
        if stdout_path:
            pathlib.Path(stdout_path).write_text(text(error.stdout) + "\n--- stderr ---\n" + text(error.stderr))
        return None, f"timed out after {timeout} s: {text(error.stderr)[-2000:]}", time.monotonic() - started
    if stdout_path:
        pathlib.Path(stdout_path).write_text(completed.stdout + "\n--- stderr ---\n" + completed.stderr)
    if completed.returncode != 0:
        tail = (completed.stderr + completed.stdout)[-2000:]
        return None, f"exit status {completed.returncode}: {tail}", time.monotonic() - started
    return completed.stdout, None, time.monotonic() - started


def run_generator(args, generator, model, workload, grpc_port, http_port, concurrency, out_dir, tag):
    """loadgen_grpc: one HTTP/2 connection (as tritonclient uses);
    loadgen_grpc_8conn: eight; pa_grpc / pa_http: perf_analyzer."""
    if generator == "loadgen_grpc":
        return loadgen(args, model, workload, grpc_port, concurrency, out_dir, tag)
    if generator == "loadgen_grpc_8conn":
        return loadgen(args, model, workload, grpc_port, concurrency, out_dir, tag, connections=8)
    protocol = generator.split("_")[1]
    port = grpc_port if protocol == "grpc" else http_port
    return perf_analyzer(args, model, port, protocol, concurrency, out_dir, tag)


def perf_analyzer(args, model, port, protocol, concurrency, out_dir, tag):
    csv_path = out_dir / f"{tag}.csv"
    command = [
        args.perf_analyzer,
        "-m", model,
        "-u", f"127.0.0.1:{port}",
        "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "-p", str(args.pa_interval_ms),
        "-s", str(args.pa_stability),
        "-r", str(args.pa_max_trials),
        "-f", csv_path,
    ]  # fmt: skip
    if args.pa_async:
        command.append("--async")
    timeout = (args.pa_max_trials + 3) * args.pa_interval_ms / 1000 + 60
    env = {"LD_LIBRARY_PATH": args.perf_analyzer_lib}
    _, error, wall = run_command(command, timeout, env=env, stdout_path=out_dir / f"{tag}.log")
    first_error = None
    if error and "failed to get model config" not in error:
        # One more try (an unstable measurement, a stuck client); both are kept.
        log(f"perf_analyzer failed ({error[:120].strip()}); trying once more")
        first_error = error
        _, error, wall = run_command(command, timeout, env=env, stdout_path=out_dir / f"{tag}.retry.log")
    if error:
        return {"error": error, "first_error": first_error, "command": " ".join(map(str, command))}
    with open(csv_path) as file:
        row = next(csv.DictReader(file))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]),
        "p90_us": float(row["p90 latency"]),
        "p99_us": float(row["p99 latency"]),
        # perf_analyzer's own breakdown of the average latency (µs).
        "pa_columns": {key: float(value) for key, value in row.items() if value not in (None, "")},
        "generator_wall_s": round(wall, 1),
        "retried_after": first_error,
        "command": " ".join(map(str, command)),
    }


def loadgen(args, model, workload, port, concurrency, out_dir, tag, connections=1):
    command = [
        args.loadgen,
        "--url", f"http://127.0.0.1:{port}",
        "--model", model,
        "--workload", workload,
        "--concurrency", str(concurrency),
        "--warmup", str(args.warmup),
        "--duration", str(args.duration),
        "--max-requests", str(args.max_requests),
        "--connections", str(connections),
    ]  # fmt: skip
    output, error, wall = run_command(
        command, args.warmup + args.duration + 60, stdout_path=out_dir / f"{tag}.log"
    )
    if error:
        return {"error": error, "command": " ".join(map(str, command))}
    result = json.loads(output.strip().splitlines()[-1])
    result["generator_wall_s"] = round(wall, 1)
    result["command"] = " ".join(map(str, command))
    return result


# --- the run ------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, type=pathlib.Path, help="output of generate_workloads.py")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--server", required=True, help="the tritonrs binary")
    parser.add_argument("--raw", required=True, help="the raw_onnxruntime bench binary")
    parser.add_argument("--loadgen", required=True, help="the loadgen bench binary")
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument("--perf-analyzer-lib", required=True, help="directory with libcudart.so.12")
    parser.add_argument("--mlserver", help="the mlserver executable of the venv (with --systems mlserver)")
    parser.add_argument("--mlserver-runtime", help="directory of runtime.py (with --systems mlserver)")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--workloads", default="simple,mlp")
    parser.add_argument("--systems", default="raw,tritonrs,mlserver")
    parser.add_argument("--generators", default="pa_grpc,pa_http,loadgen_grpc,loadgen_grpc_8conn")
    parser.add_argument("--mlserver-generators", default="loadgen_grpc,loadgen_grpc_8conn")
    parser.add_argument("--raw-batches", default="1,2,4,8,16,32")
    parser.add_argument("--raw-duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="loadgen warm-up seconds")
    parser.add_argument("--duration", type=float, default=4.0, help="loadgen measurement seconds")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--pa-interval-ms", type=int, default=1500)
    parser.add_argument("--pa-stability", type=int, default=100)
    parser.add_argument("--pa-max-trials", type=int, default=6)
    parser.add_argument("--pa-async", action="store_true", help="perf_analyzer --async (default: its sync mode)")
    parser.add_argument("--quiet-threshold", type=float, default=0.15)
    parser.add_argument("--quiet-max-wait", type=float, default=300, help="per repetition, before it starts")
    parser.add_argument("--quiet-wait-per-measurement", type=float, default=60)
    parser.add_argument("--quiet-budget", type=float, default=600, help="seconds of waiting per run, in all")
    parser.add_argument("--meta", type=pathlib.Path, help="JSON with machine and version facts to include")
    args = parser.parse_args()

    out = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    workloads = args.workloads.split(",")
    systems = args.systems.split(",")
    generators = args.generators.split(",")
    mlserver_generators = args.mlserver_generators.split(",")
    if "mlserver" in systems and not (args.mlserver and args.mlserver_runtime):
        parser.error("--systems mlserver needs --mlserver and --mlserver-runtime")
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {key: str(value) for key, value in vars(args).items()},
        "workloads": json.loads((args.models / "workloads.json").read_text()),
        "meta": json.loads(args.meta.read_text()) if args.meta else {},
        "quiet": [],
        "output_checks": [],
        "raw": [],
        "raw_beside": [],
        "measurements": [],
    }
    started = time.monotonic()
    gate = QuietGate(args.quiet_threshold, args.quiet_wait_per_measurement, args.quiet_budget)

    def save():
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    def verify(system, repetition, http_port, model, workload):
        error = check_outputs(http_port, model, results["workloads"]["workloads"][workload])
        results["output_checks"].append({"system": system, "repetition": repetition, "model": model, "max_relative_error": error})
        log(f"{system} {model}: answers match the reference (largest relative error {error:.1e})")

    def measure(repetition, system, server, ports, workload, model, generator, concurrency, read_counters, settle_s=0.0):
        """One generator run against a running server, with the server's
        counters across it and the CPU each party used; recorded and saved."""
        grpc_port, http_port = ports
        tag = f"{system}.{model}.{generator}.c{concurrency}.rep{repetition}"
        quiet_before = gate()
        before = read_counters()
        meter = CpuMeter(server.pid)
        outcome = run_generator(args, generator, model, workload, grpc_port, http_port,
                                concurrency, out / "logs", tag)  # fmt: skip
        cpu = meter.stop()
        time.sleep(settle_s)
        counters = counter_delta(before, read_counters())
        record(results, repetition, system, workload, model, generator, concurrency, outcome, counters, cpu,
               quiet_before)  # fmt: skip
        save()

    def bracket_with_raw(repetition, workload, generator, concurrency, point):
        """Runs a measurement between two raw runs at batch 32. The share of
        the raw limit in the summary compares the batched W2 point at c=32
        with these, because the repetition's own raw limit was measured
        minutes earlier and this host's speed changes within minutes."""
        gate()
        before = raw_limit(args, workload, "32")["results"][0]
        point()
        after = raw_limit(args, workload, "32")["results"][0]
        results["raw_beside"].append({
            "repetition": repetition, "workload": workload, "batch": 32, "generator": generator,
            "concurrency": concurrency, "before": before, "after": after,
        })  # fmt: skip
        log(f"raw {workload} b32 beside {generator}: {before['inferences_per_s']:.0f}/s before, "
            f"{after['inferences_per_s']:.0f}/s after")  # fmt: skip
        save()

    for repetition in range(1, args.repetitions + 1):
        log(f"=== repetition {repetition} of {args.repetitions}")
        quiet = wait_until_quiet(args.quiet_threshold, args.quiet_max_wait)
        results["quiet"].append({"repetition": repetition, **quiet})

        if "raw" in systems:
            for workload in workloads:
                gate()
                report = raw_limit(args, workload, args.raw_batches)
                report["repetition"] = repetition
                results["raw"].append(report)
                log(
                    f"raw {workload}: "
                    + ", ".join(f"b{r['batch']} {r['inferences_per_s']:.0f}/s p50 {r['p50_us']}us" for r in report["results"])
                )
            save()

        if "tritonrs" in systems:
            grpc_port, http_port = free_port(), free_port()
            server = Server(
                "tritonrs",
                [
                    args.server,
                    f"--model-repository={args.models / 'triton'}",
                    "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}",
                    "--http-address=127.0.0.1", f"--http-port={http_port}",
                    "--allow-metrics=false",
                ],  # fmt: skip
                {"NO_COLOR": "1"},
                out / "logs" / f"tritonrs.rep{repetition}.log",
            )
            try:
                models = [f"{w}_{variant}" for w in workloads for variant in ("nobatching", "batching")]
                server.wait_ready([f"http://127.0.0.1:{http_port}/v2/models/{m}/ready" for m in models])
                for model in models:
                    verify("tritonrs", repetition, http_port, model, model.split("_")[0])
                # The two models of a workload are measured back to back at
                # each point, so that the batching ratio compares runs seconds
                # apart rather than minutes: this host's speed drifts by up
                # to a fifth within minutes.
                for workload in workloads:
                    for generator in generators:
                        for concurrency in concurrencies:
                            for variant in ("nobatching", "batching"):
                                model = f"{workload}_{variant}"
                                point = functools.partial(
                                    measure, repetition, "tritonrs", server, (grpc_port, http_port), workload, model,
                                    generator, concurrency, functools.partial(triton_counters, http_port, model))  # fmt: skip
                                if "raw" in systems and (workload, variant, concurrency) == ("mlp", "batching", 32):
                                    bracket_with_raw(repetition, workload, generator, concurrency, point)
                                else:
                                    point()
            finally:
                server.stop()

        if "mlserver" in systems:
            grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
            stats_dir = out / "mlserver-counters" / f"rep{repetition}"
            stats_dir.mkdir(parents=True, exist_ok=True)
            server = Server(
                "mlserver",
                [args.mlserver, "start", args.models / "mlserver"],
                {
                    "PYTHONPATH": args.mlserver_runtime,
                    "MLSERVER_HTTP_PORT": str(http_port),
                    "MLSERVER_GRPC_PORT": str(grpc_port),
                    "MLSERVER_METRICS_PORT": str(metrics_port),
                    "BENCH_MLSERVER_STATS_DIR": str(stats_dir),
                },
                out / "logs" / f"mlserver.rep{repetition}.log",
            )
            try:
                server.wait_ready([f"http://127.0.0.1:{http_port}/v2/models/{w}/ready" for w in workloads])
                for workload in workloads:
                    verify("mlserver", repetition, http_port, workload, workload)
                # perf_analyzer asks for the model's Triton configuration
                # first, which MLServer does not serve: record what it says.
                for protocol, port in (("grpc", grpc_port), ("http", http_port)):
                    tag = f"mlserver.{workloads[0]}.pa_{protocol}.probe.rep{repetition}"
                    probe = perf_analyzer(args, workloads[0], port, protocol, 1, out / "logs", tag)
                    results.setdefault("mlserver_perf_analyzer_probe", []).append(
                        {"repetition": repetition, "protocol": protocol, **probe}
                    )
                    log(f"perf_analyzer {protocol} against MLServer: {probe.get('error', 'works')[:200]}")
                for workload in workloads:
                    for generator in mlserver_generators:
                        for concurrency in concurrencies:
                            # The runtime writes its counters every 0.2 s.
                            measure(repetition, "mlserver", server, (grpc_port, http_port), workload, workload,
                                    generator, concurrency, lambda: mlserver_counters(stats_dir, workload),
                                    settle_s=0.6)  # fmt: skip
            finally:
                server.stop()

    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    save()
    log(f"done in {results['elapsed_s']:.0f} s: {out / 'results.json'}")


def raw_limit(args, workload, batches):
    """bench/raw_onnxruntime.rs on the workload's unbatched model at the
    given batch sizes, with the CPU it and everything else used."""
    command = [
        args.raw,
        "--model", args.models / "triton" / f"{workload}_nobatching",
        "--workload", workload,
        "--batch", batches,
        "--duration", str(args.raw_duration),
    ]  # fmt: skip
    meter = CpuMeter(os.getpid())
    output, error, _ = run_command(command, 60 + 10 * args.raw_duration * 6)
    cpu = meter.stop()
    if error:
        raise RuntimeError(f"raw_onnxruntime failed: {error}")
    report = json.loads(output.strip().splitlines()[-1])
    report["cpu"] = {"raw_cores": cpu["generator_cores"], "other_cores": cpu["other_cores"]}
    report["command"] = " ".join(map(str, command))
    return report


def record(results, repetition, system, workload, model, generator, concurrency, outcome, counters, cpu, quiet):
    entry = {
        "repetition": repetition,
        "system": system,
        "workload": workload,
        "model": model,
        "batching": not model.endswith("_nobatching"),
        "generator": generator,
        "concurrency": concurrency,
        **outcome,
        "server_counters": counters,
        "cpu": cpu,
        "machine_before": quiet,
    }
    results["measurements"].append(entry)
    if "error" in outcome:
        log(f"{system} {model} {generator} c{concurrency}: FAILED {outcome['error'][:300]}")
    else:
        log(
            f"{system} {model} {generator} c{concurrency}: {outcome['throughput']:.0f}/s "
            f"p50 {outcome['p50_us']:.0f}us p99 {outcome['p99_us']:.0f}us batch {counters.get('avg_batch')} "
            f"cpu server {cpu['server_cores']} gen {cpu['generator_cores']} other {cpu['other_cores']}"
        )


if __name__ == "__main__":
    main()
