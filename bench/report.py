#!/usr/bin/env python3
"""Turns a results.json of bench/run_bench.py into Markdown tables.

    python bench/report.py bench/.work/results/<run>/results.json > report.md

Every figure is the median over the repetitions (with two repetitions, the
mean of the two). A server's "raw limit at the same effective batch" is the
raw in-process throughput interpolated linearly between the measured batch
sizes (1, 2, 4, 8, 16, 32) at the server's average batch size for that
measurement (inference_count / execution_count over the measurement; 1 when
the model does not batch).
"""

import json
import math
import statistics
import sys
from collections import defaultdict

GENERATOR_NAMES = {
    "pa_grpc": "perf_analyzer gRPC",
    "pa_http": "perf_analyzer HTTP",
    "loadgen_grpc": "loadgen gRPC",
    "loadgen_grpc_8conn": "loadgen gRPC ×8 conn.",
}
# The generators of the W2 acceptance figures, all over gRPC.
GRPC_GENERATORS = ("pa_grpc", "loadgen_grpc", "loadgen_grpc_8conn")
# Median CPU of other processes during a measurement above which it is marked.
NOISY = 0.25
WORKLOAD_NAMES = {"simple": "W1 simple (INT32 add/sub [16])", "mlp": "W2 MLP 256-1024-1024-16 (FP32)"}


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_down(value, digits):
    """Rounded down, for a figure with a lower bound: 39.96 % shows as
    39.9 %, not as a 40.0 % that falls short."""
    return fmt(math.floor(value * 10**digits) / 10**digits if value is not None else None, digits)


def fmt_up(value, digits):
    """Rounded up, for a figure with an upper bound."""
    return fmt(math.ceil(value * 10**digits) / 10**digits if value is not None else None, digits)


class Raw:
    def __init__(self, results):
        by_key = defaultdict(list)
        for report in results["raw"]:
            for entry in report["results"]:
                by_key[(report["workload"], entry["batch"])].append(entry)
        self.entries = {
            key: {
                "inferences_per_s": median([entry["inferences_per_s"] for entry in entries]),
                "p50_us": median([entry["p50_us"] for entry in entries]),
                "p99_us": median([entry["p99_us"] for entry in entries]),
            }
            for key, entries in by_key.items()
        }
        # Per repetition too: the raw limit moves with the host between
        # repetitions, and a share of a median hides which state it met.
        self.by_repetition = {
            (report["workload"], entry["batch"], report["repetition"]): entry["inferences_per_s"]
            for report in results["raw"]
            for entry in report["results"]
        }
        # The raw limit measured right before and right after a batched W2
        # point at c=32 (the mean of the two), by (generator, repetition).
        self.beside = {
            (entry["generator"], entry["repetition"]): (entry["before"]["inferences_per_s"] + entry["after"]["inferences_per_s"]) / 2
            for entry in results.get("raw_beside", [])
        }
        self.threads = {report["workload"]: report["intra_op_threads"] for report in results["raw"]}
        self.other = {
            report["workload"]: median([r.get("cpu", {}).get("other_cores") for r in results["raw"] if r["workload"] == report["workload"]])
            for report in results["raw"]
        }

    def batches(self, workload):
        return sorted(batch for (name, batch) in self.entries if name == workload)

    def at(self, workload, batch):
        """Raw throughput interpolated at a (fractional) batch size."""
        batches = self.batches(workload)
        if not batches or batch is None:
            return None
        batch = min(max(batch, batches[0]), batches[-1])
        for low, high in zip(batches, batches[1:]):
            if low <= batch <= high:
                low_value = self.entries[(workload, low)]["inferences_per_s"]
                high_value = self.entries[(workload, high)]["inferences_per_s"]
                return low_value + (high_value - low_value) * (batch - low) / (high - low)
        return self.entries[(workload, batches[0])]["inferences_per_s"]


def summarize(results, raw):
    groups = defaultdict(list)
    for entry in results["measurements"]:
        key = (entry["workload"], entry["system"], entry["model"], entry["generator"], entry["concurrency"])
        groups[key].append(entry)
    summary = {}
    for key, entries in groups.items():
        good = [entry for entry in entries if "error" not in entry]
        batch = median([entry["server_counters"].get("avg_batch") for entry in good])
        if batch is None and good and not good[0]["batching"]:
            batch = 1.0
        throughput = median([entry["throughput"] for entry in good])
        limit = raw.at(key[0], batch)
        summary[key] = {
            "failures": [entry["error"][:200] for entry in entries if "error" in entry],
            "repetitions": len(entries),
            "retried": sum(1 for entry in entries if entry.get("first_error") or entry.get("retried_after")),
            "throughput": throughput,
            "throughput_by_repetition": {entry["repetition"]: entry["throughput"] for entry in good},
            "p50_us": median([entry["p50_us"] for entry in good]),
            "p99_us": median([entry["p99_us"] for entry in good]),
            "batch": batch,
            "raw_at_batch": limit,
            "ratio": throughput / limit if throughput and limit else None,
            "server_cores": median([entry["cpu"]["server_cores"] for entry in good]),
            "generator_cores": median([entry["cpu"]["generator_cores"] for entry in good]),
            "other_cores": median([entry["cpu"]["other_cores"] for entry in good]),
            "queue_us": median([entry["server_counters"].get("avg_queue_us") for entry in good]),
            "server_us": median([entry["server_counters"].get("avg_server_us") for entry in good]),
        }
    return summary


def paired_by_repetition(first, second):
    """(first, second) throughputs of the repetitions that measured both."""
    a = first.get("throughput_by_repetition", {})
    b = second.get("throughput_by_repetition", {})
    return [(a[repetition], b[repetition]) for repetition in sorted(a) if repetition in b and b[repetition]]


def share_list(pairs):
    """'throughput / limit = share %' for each (throughput, limit) pair."""
    return "; ".join(
        f"{fmt(throughput)} / {fmt(limit)} = {fmt_down(100 * throughput / limit, 1)} %" for throughput, limit in pairs if throughput and limit
    )


def generator_bound(results, summary, raw32):
    """What the load generators' own CPU leaves any server at W2 batched
    c=32: the generator and the server share the machine's cores, so even a
    server whose frontend cost nothing stops at cores / (generator CPU per
    request + ONNX Runtime CPU per row). ONNX Runtime is counted at its
    calling thread's time alone (1 / the raw rate at batch 32), which its
    other intra-op threads only add to: the bound is never too low. None
    when the run lacks what it needs."""
    cores = results.get("meta", {}).get("nproc")
    if not cores or not raw32:
        return None
    runtime_us = 1e6 / raw32
    parts = []
    for generator in GRPC_GENERATORS:
        entry = summary.get(("mlp", "tritonrs", "mlp_batching", generator, 32), {})
        throughput, generator_cores = entry.get("throughput"), entry.get("generator_cores")
        if not throughput or not generator_cores:
            continue
        generator_us = 1e6 * generator_cores / throughput
        bound = cores * 1e6 / (generator_us + runtime_us)
        parts.append(
            f"{GENERATOR_NAMES[generator]} {fmt(generator_us, 1)} µs of its own CPU per request, "
            f"so no server passes {fmt(bound)} inferences/s ({fmt_up(100 * bound / raw32, 1)} % of the raw limit)"
        )
    if not parts:
        return None
    return (f"What the generators leave any server at W2 batched c=32 on these {cores} cores, counting "
            f"{fmt(runtime_us, 1)} µs of ONNX Runtime per row (its calling thread at the raw limit of "
            f"{fmt(raw32)} inferences/s at batch 32): " + "; ".join(parts) + ".")  # fmt: skip


def verdict(ok):
    if ok is None:
        return "NOT MEASURED"
    return "PASS" if ok else "FALL SHORT"


def main():
    results = json.loads(open(sys.argv[1]).read())
    raw = Raw(results)
    summary = summarize(results, raw)
    meta = results.get("meta", {})
    settings = results["settings"]
    lines = []
    out = lines.append

    repetitions = sorted({entry["repetition"] for entry in results["measurements"]} | {r["repetition"] for r in results["raw"]})
    out(f"Run {results['started']} – {results.get('finished', 'unfinished')}, {results.get('elapsed_s', 0):.0f} s, "
        f"{len(repetitions)} repetition(s); figures are medians over them.")
    out("")
    if meta:
        gpus = "".join(f", GPU {gpu}" for gpu in meta.get("gpus", []))
        mlserver = (
            f"MLServer {meta['mlserver']} (onnxruntime {meta.get('onnxruntime_python')}, grpcio {meta.get('grpcio')}, "
            f"uvloop {meta.get('uvloop')}, Python {meta.get('python')}), "
            if meta.get("mlserver")
            else ""
        )
        out(f"Machine: {meta.get('nproc')} × {meta.get('cpu_model')}, {meta.get('memory_kib', 0) / 2**20:.1f} GiB{gpus}, "
            f"{meta.get('os')}, kernel {meta.get('kernel')}. Versions: {meta.get('rustc')}, ort {meta.get('ort_crate')}, "
            f"ONNX Runtime 1.31.1 ({meta.get('onnxruntime_library')}), tonic {meta.get('tonic_crate')}, "
            f"{mlserver}perf_analyzer from tritonclient 2.50.0; "
            f"commit {meta.get('git_commit', '')[:12]}{' (dirty)' if meta.get('git_dirty') else ''}.")
        out("")
    checks = results.get("output_checks", [])
    if checks:
        worst = max(check["max_relative_error"] for check in checks)
        out(f"Answers: every server's answers to the reference inputs matched the NumPy float64 outputs before "
            f"its measurements ({len(checks)} checks; largest error {worst:.1e} of the largest output value).")
        out("")
    quiet = ", ".join(f"rep {q['repetition']}: {q['busy_fraction']:.0%} busy before start" for q in results["quiet"])
    out(f"Windows: loadgen {settings['warmup']} s warm-up + {settings['duration']} s; perf_analyzer "
        f"{settings['pa_interval_ms']} ms windows, stability {settings['pa_stability']} %, at most "
        f"{settings['pa_max_trials']} trials ({'async' if settings['pa_async'] == 'True' else 'sync'} mode); raw "
        f"{settings['raw_duration']} s per batch size. Machine load: {quiet}.")
    out("")

    # Raw limit.
    devices = sorted({report.get("device", "Cpu") for report in results["raw"]})
    out(f"### Raw limit: in-process `ort` (same library, same session settings; device {', '.join(devices)})")
    out("")
    out("| Workload | intra-op threads | Batch | Inferences/s | Calls/s | p50 µs / call | p99 µs / call | Other CPU (cores) |")
    out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for workload in ("simple", "mlp"):
        for batch in raw.batches(workload):
            entry = raw.entries[(workload, batch)]
            out(f"| {WORKLOAD_NAMES[workload]} | {raw.threads.get(workload)} | {batch} | {fmt(entry['inferences_per_s'])} | "
                f"{fmt(entry['inferences_per_s'] / batch)} | {fmt(entry['p50_us'], 1)} | {fmt(entry['p99_us'], 1)} | "
                f"{fmt(raw.other.get(workload), 2)} |")
    out("")

    # Servers.
    concurrencies = sorted({key[4] for key in summary})
    for workload in ("simple", "mlp"):
        keys = sorted(
            {key[:4] for key in summary if key[0] == workload},
            key=lambda key: (key[1] != "tritonrs", key[2].endswith("_nobatching") is False, list(GENERATOR_NAMES).index(key[3])),
        )
        if not keys:
            continue
        out(f"### {WORKLOAD_NAMES[workload]}")
        out("")
        out("| Server | Batching | Generator | Conc. | Inferences/s | p50 µs | p99 µs | Eff. batch | Raw at eff. batch | Ratio to raw | CPU server / gen / other (cores) |")
        out("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for _, system, model, generator in keys:
            for concurrency in concurrencies:
                entry = summary.get((workload, system, model, generator, concurrency))
                if not entry:
                    continue
                batching = "no" if model.endswith("_nobatching") else ("adaptive" if system == "mlserver" else "dynamic")
                name = "tritonrs" if system == "tritonrs" else "MLServer 1.7.1"
                failed = f" ({len(entry['failures'])} failed)" if entry["failures"] else ""
                if (entry["other_cores"] or 0) > NOISY:
                    failed += " †"
                out(f"| {name} | {batching} | {GENERATOR_NAMES[generator]} | {concurrency} | {fmt(entry['throughput'])}{failed} | "
                    f"{fmt(entry['p50_us'])} | {fmt(entry['p99_us'])} | {fmt(entry['batch'], 2)} | {fmt(entry['raw_at_batch'])} | "
                    f"{fmt(entry['ratio'] * 100 if entry['ratio'] else None, 1)} % | "
                    f"{fmt(entry['server_cores'], 2)} / {fmt(entry['generator_cores'], 2)} / {fmt(entry['other_cores'], 2)} |")
        out("")

    out(f"† other processes used more than {NOISY} cores (median) during the measurement.")
    out("")

    # Acceptance figures.
    def get(workload, system, model, generator, concurrency):
        return summary.get((workload, system, model, generator, concurrency), {})

    out("### Acceptance figures, every generator")
    out("")
    out("| Figure | Target | Generator | Measured | Verdict |")
    out("| --- | --- | --- | --- | --- |")
    for generator in GRPC_GENERATORS:
        batched_entry = get("mlp", "tritonrs", "mlp_batching", generator, 32)
        single_entry = get("mlp", "tritonrs", "mlp_nobatching", generator, 32)
        batched, single = batched_entry.get("throughput"), single_entry.get("throughput")
        ratio = batched / single if batched and single else None
        # Each repetition measures the two models back to back, so their
        # ratio per repetition shows how much of the spread is the host's.
        by_repetition = [
            fmt(pair[0] / pair[1], 2) + "×" for pair in paired_by_repetition(batched_entry, single_entry)
        ]
        spread = f" (repetitions: {', '.join(by_repetition)})" if len(by_repetition) > 1 else ""
        out(f"| W2, c=32, gRPC: dynamic batching vs none | ≥ 2.5× | {GENERATOR_NAMES[generator]} | "
            f"{fmt(batched)} / {fmt(single)} = {fmt_down(ratio, 2)}×{spread} | {verdict(ratio >= 2.5 if ratio else None)} |")
    raw32 = raw.entries.get(("mlp", 32), {}).get("inferences_per_s")
    for generator in GRPC_GENERATORS:
        batched_entry = get("mlp", "tritonrs", "mlp_batching", generator, 32)
        batched = batched_entry.get("throughput")
        by_repetition = sorted(batched_entry.get("throughput_by_repetition", {}).items())
        # The repetition's own raw limit was measured minutes before the
        # server; results since the twenty-third run also hold the raw limit
        # measured right beside the point, and the verdict uses that pairing.
        start_pairs = [(throughput, raw.by_repetition.get(("mlp", 32, repetition))) for repetition, throughput in by_repetition]
        beside_pairs = [(throughput, raw.beside.get((generator, repetition))) for repetition, throughput in by_repetition]
        median_share = batched / raw32 if batched and raw32 else None
        start_text = f"{fmt(batched)} / {fmt(raw32)} = {fmt_down(median_share * 100 if median_share else None, 1)} %"
        if any(limit for _, limit in beside_pairs):
            shares = [throughput / limit for throughput, limit in beside_pairs if throughput and limit]
            share = median(shares)
            figure = (f"{fmt_down(share * 100 if share else None, 1)} % against the raw limit beside it "
                      f"(repetitions: {share_list(beside_pairs)}); {start_text} against the repetitions' own raw limits "
                      f"({share_list(start_pairs)})")  # fmt: skip
        else:
            share = median_share
            spread = f" (repetitions: {share_list(start_pairs)})" if len(start_pairs) > 1 else ""
            figure = start_text + spread
        out(f"| W2, c=32, gRPC, dynamic batching vs raw at batch 32 | ≥ 40 % | {GENERATOR_NAMES[generator]} | "
            f"{figure} | {verdict(share >= 0.4 if share else None)} |")
    raw_p50 = raw.entries.get(("simple", 1), {}).get("p50_us")
    for generator in ("pa_grpc", "loadgen_grpc", "pa_http"):
        for model in ("simple_nobatching", "simple_batching"):
            p50 = get("simple", "tritonrs", model, generator, 1).get("p50_us")
            if p50 is None:
                continue
            added = p50 - raw_p50 if raw_p50 is not None else None
            label = "no batching" if model.endswith("nobatching") else "dynamic batching (500 µs max queue delay)"
            out(f"| W1, c=1, p50 added over the raw call, {label} | ≤ 100 µs | {GENERATOR_NAMES[generator]} | "
                f"{fmt(p50, 1)} − {fmt(raw_p50, 1)} = {fmt_up(added, 1)} µs | {verdict(added <= 100 if added is not None else None)} |")
    for workload, concurrency in (("simple", 8), ("mlp", 32)):
        for generator in ("loadgen_grpc", "loadgen_grpc_8conn"):
            theirs = get(workload, "mlserver", workload, generator, concurrency).get("throughput")
            if theirs is None:
                continue
            for variant in ("batching", "nobatching"):
                ours = get(workload, "tritonrs", f"{workload}_{variant}", generator, concurrency).get("throughput")
                ratio = ours / theirs if ours and theirs else None
                label = "dynamic batching" if variant == "batching" else "no batching"
                out(f"| {'W1' if workload == 'simple' else 'W2'}, c={concurrency}: tritonrs ({label}) vs MLServer (adaptive batching) | ≥ 5× | "
                    f"{GENERATOR_NAMES[generator]} | {fmt(ours)} / {fmt(theirs)} = {fmt_down(ratio, 1)}× | {verdict(ratio >= 5 if ratio else None)} |")
    out("")
    bound = generator_bound(results, summary, raw32)
    if bound:
        out(bound)
        out("")
    probes = results.get("mlserver_perf_analyzer_probe", [])
    if probes:
        out("perf_analyzer against MLServer: " + "; ".join(
            f"{probe['protocol']} (rep {probe['repetition']}): "
            + (probe["error"].strip().splitlines()[-1] if "error" in probe else "works")
            for probe in probes
        ) + ".")
        out("")
    failures = [(key, entry["failures"]) for key, entry in summary.items() if entry["failures"]]
    if failures:
        out("Failed measurements:")
        out("")
        for key, messages in failures:
            entry = summary[key]
            reason = messages[0].strip().rstrip(":")
            runs = entry["repetitions"]
            retried = f" ({entry['retried']} of the {runs} runs retried once)" if entry["retried"] else ""
            # BENCHMARKS.md explains the one failure every run has shown.
            known = (" — see [perf_analyzer over HTTP](#perf_analyzer-over-http-at-c32-on-w1-perf_analyzer-starves-itself)"
                     if key[3] == "pa_http" else "")
            out(f"- {' / '.join(map(str, key))}: {reason} in {len(messages)} of {runs} repetition(s){retried}{known}")
        out("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
