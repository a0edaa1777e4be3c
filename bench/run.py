"""Benchmarks of the connector: prints a table, writes bench/results.json.

    python bench/run.py [--quick] [--only 1,2,...]      (tox -e bench)

Every figure is printed next to a ceiling measured in the SAME run (this machine is
shared with other work: absolute numbers drift, ratios much less). Benchmarks that
measure RSS or open thousands of sockets (#4/#5, #7) run in fresh interpreters.
`--quick` shrinks every size for a smoke run (its figures are not the reported ones).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import machine, run_child  # noqa: E402

HERE = os.path.join(ROOT, "bench")
SIZES = {
    False: {"events": 20_000, "k8s_events": 3_000, "rounds": 3, "deliver": 6_000, "latency_s": 60.0,
            "watches": 10_000, "pods": 10_000, "storm": 100_000, "balance_trials": 200, "leases": (15, 3)},
    True: {"events": 4_000, "k8s_events": 800, "rounds": 2, "deliver": 1_500, "latency_s": 10.0,
           "watches": 2_000, "pods": 2_000, "storm": 20_000},
}
MiB = 2**20


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# -- one function per benchmark: run it, return (raw result, table rows) ------------------
# A row: (#, what, figure, ceiling, ratio, target, verdict)


def one(size):
    from bench.outgoing import bench_outgoing
    from bench.pipeline import bench_pipeline

    r = bench_pipeline(events=size["events"], rounds=size["rounds"], k8s_events=size["k8s_events"],
                       profile_to=os.path.join(HERE, "profile_pipeline.txt"))
    r["outgoing"] = o = bench_outgoing(rounds=size["rounds"] + 2)
    json_rate = r["json"]["wall_rate"]
    k = r["k8s_watch"]
    storm, routine = r["storm_mix"], r["routine_mix"]
    rows = [
        ("1", f"pipeline ev/s, storm mix ({r['mean_event_bytes']} B, {storm['changes_per_event']} chg/ev)",
         f"{r['pipeline']['wall_rate']:,.0f}", f"json.loads {json_rate:,.0f}", f"{r['ratio_wall']:.2f}", ">= 1.00",
         verdict(r["ratio_wall"] >= 1.0)),
        ("1", "  same, by CPU time", f"{r['pipeline']['cpu_rate']:,.0f}", f"json.loads {r['json']['cpu_rate']:,.0f}",
         f"{r['ratio_cpu']:.2f}", ">= 1.00", verdict(r["ratio_cpu"] >= 1.0)),
        ("1", f"  routine mix ({routine['changes_per_event']} chg/ev)", f"{r['routine']['wall_rate']:,.0f}",
         f"json.loads {r['routine_json']['wall_rate']:,.0f}", f"{r['routine_ratio_wall']:.2f}", ">= 1.20",
         verdict(r["routine_ratio_wall"] >= 1.2)),
        ("1", "  transport + decode only (ListerWatcher)", f"{r['transport']['wall_rate']:,.0f}",
         f"json.loads {json_rate:,.0f}", f"{r['transport']['wall_rate'] / json_rate:.2f}", "", "info"),
        ("1", "  decode only (msgspec, typed Pod)", f"{r['decode']['wall_rate']:,.0f}", f"json.loads {json_rate:,.0f}",
         f"{r['decode']['wall_rate'] / json_rate:.2f}", "", "info"),
        ("1", "  + to_outgoing (real emit)", f"{r['serialising']['wall_rate']:,.0f}", f"json.loads {json_rate:,.0f}",
         f"{r['serialising']['wall_rate'] / json_rate:.2f}", "", "info"),
        ("1b", f"k8s Watch().stream ev/s ({k['events']})", f"{k['k8s']['wall_rate']:,.0f}",
         f"json.loads {k['json']['wall_rate']:,.0f}", f"{k['ratio_to_json_wall']:.2f}", "report", "info"),
        ("1b", "  vs our pipeline, same events", f"{k['k8s']['wall_rate']:,.0f}", f"ours {k['pipeline']['wall_rate']:,.0f}",
         f"{k['ratio_to_pipeline_wall']:.2f}", "report", "info"),
        ("1c", f"outgoing us/event, msgspec ({o['payload_bytes']:,} B)", f"{o['msgspec_us']:.1f}",
         f"marshmallow+json.dumps {o['marshmallow_json_us']:.1f}", f"{o['speedup']:.1f}x", "", "info"),
        ("1c", "  marshmallow dump alone (old to_outgoing)", f"{o['marshmallow_dump_us']:.1f}", "", "", "", "info"),
    ]
    return r, rows


def two(size):
    from bench.delivery import bench_delivery

    r = bench_delivery(events=size["deliver"], rounds=size["rounds"])
    cpu = r["cpu"]
    rows = [
        ("2", f"delivery ev/s (8 senders, {r['integrations']} integr.)", f"{r['outbox_rate']:,.0f}",
         f"requests.Session {r['raw_rate']:,.0f}", f"{r['ratio']:.2f}", ">= 2,000/s",
         verdict(r["outbox_rate"] >= 2000)),
        ("2", "  lighter client ceiling (urllib3)", f"{r['outbox_rate']:,.0f}", f"urllib3 {r['urllib3_rate']:,.0f}",
         f"{r['ratio_to_urllib3']:.2f}", "", "info"),
        ("2", "  CPU us/event: ours | requests | urllib3",
         f"{cpu['outbox']['client_us_per_event']} | {cpu['raw']['client_us_per_event']} | "
         f"{cpu['urllib3']['client_us_per_event']}", f"backend {cpu['outbox']['server_us_per_event']}", "", "", "info"),
        ("2", "  one integration (ordered queue)", f"{r['single_integration_rate']:,.0f}", "", "", "", "info"),
    ]
    return r, rows


def three(size):
    from bench.latency import bench_latency

    r = bench_latency(rate=10.0, seconds=size["latency_s"])
    rows = [
        ("3", f"e2e latency p50 ms ({r['arrived']}/{r['changes']} arrived)", f"{r['p50_ms']:.1f}",
         f"raw watch {r['raw_p50_ms']:.1f}", f"{r['p50_ms'] - r['raw_p50_ms']:+.1f} ms", "", "info"),
        ("3", "  p99 ms", f"{r['p99_ms']:.1f}", f"raw watch {r['raw_p99_ms']:.1f}",
         f"{r['p99_ms'] - r['raw_p99_ms']:+.1f} ms", "< 50 ms",
         verdict(r["p99_ms"] < 50 and r["arrived"] == r["changes"])),
    ]
    return r, rows


def four_five(size):
    r = run_child("bench.scale", str(size["watches"]), timeout=900)  # ~9 min with the probe windows
    top, one_k, idle, ceiling, rewatch = r["stage_max"], r["stage_1k"], r["idle"], r["idle_ceiling"], r["rewatch"]
    off = r["idle_probe_off"]
    rs = r["resync"]
    probe, probe_alone = r["probe_cost"], r["probe_alone"]
    per_watch = (top["rss"] - one_k["rss"]) / max(1, top["watches"] - one_k["watches"])
    steady_rate = top["watches"] / (0.75 * 300)  # default watch_timeout 300 s: streams of 150-300 s
    steady = idle["cpu_percent_of_core"] + 100 * steady_rate * rewatch["cpu_us_per_rewatch"] / 1e6
    rows = [
        ("4", f"RSS, {top['watches']:,} watches open ({top['open_at_server']:,} at server)", f"{top['rss'] / MiB:,.0f} MiB",
         f"empty {r['rss_empty'] / MiB:.0f} MiB", f"{per_watch / 1024:.1f} KiB/watch", "< 1 GiB",
         verdict(top["rss"] < 2**30 and top["open_at_server"] >= size["watches"])),
        ("4", f"  RSS, {one_k['watches']:,} watches", f"{one_k['rss'] / MiB:,.0f} MiB", "", "", "report", "info"),
        ("4", f"  idle CPU % of a core, {IDLE_LABEL}, probe off", f"{off['cpu_percent_of_core']:.1f} %",
         f"bare gevent sockets {ceiling['cpu_percent_of_core']:.1f} %",
         f"{off['cpu_percent_of_core'] / ceiling['cpu_percent_of_core']:.2f}x", "<= 1.10x",
         verdict(off["cpu_percent_of_core"] <= 1.1 * ceiling["cpu_percent_of_core"])),
        ("4", "    same, stall probe on (the default)", f"{idle['cpu_percent_of_core']:.1f} %",
         f"bare gevent sockets {ceiling['cpu_percent_of_core']:.1f} %",
         f"{idle['cpu_percent_of_core'] / ceiling['cpu_percent_of_core']:.2f}x", "< 5 %",
         verdict(idle["cpu_percent_of_core"] < 5)),
        ("4", f"  idle CPU, all quiet, stall probe on ({probe['clusters']:,} clusters)",
         f"{probe['on']['cpu_percent_of_core']:.1f} %", f"probe off {probe['off']['cpu_percent_of_core']:.1f} %",
         f"{probe['on']['probes_per_s']:.1f} probes/s", f"<= {probe['rate']:.0f} probes/s",
         verdict(probe["on"]["probes_per_s"] <= probe["rate"] * 1.05 and not probe["stall_restarts_during"])),
        ("4", "  stall probe alone: CPU per probe, at the rate cap", f"{probe_alone['cpu_us_per_probe']:,.0f} us",
         f"{probe_alone['percent_at_cap']:.1f} % of a core at {probe['rate']:.0f}/s", "", "< 5 %",
         verdict(probe_alone["percent_at_cap"] < 5)),
        ("4", "  + re-watches at default 300 s (steady)", f"{steady:.1f} %",
         f"{rewatch['cpu_us_per_rewatch']:,.0f} us/re-watch", f"{steady_rate:.0f} re-watch/s", "", "info"),
        ("4", "  fd limit (soft, hard)", f"{r['fd_limit'][0]}, {r['fd_limit'][1]}", f"{top['fds']:,} fds used", "",
         "", "fd-limited" if r["fd_limited"] else "info"),
        ("5", f"re-sync {rs['integrations']:,} unchanged integrations", f"{rs['cpu_ms']:.1f} ms CPU",
         f"wanted_watches alone {rs['wanted_watches_cpu_ms']:.1f} ms",
         f"{rs['counts']['restarted'] + rs['counts']['started'] + rs['counts']['stopped']} restarts",
         "0 restarts, < 100 ms",
         verdict(rs["cpu_ms"] < 100 and not (rs["counts"]["restarted"] + rs["counts"]["started"]
                                             + rs["counts"]["stopped"]))),
    ]
    return r, rows


IDLE_LABEL = "20 s, bookmark/30 s"


def six(size):
    from bench.state import bench_state

    r = bench_state(pods=size["pods"])
    w = r["worst_case"]
    # A fresh interpreter: after the pods above, this process's tables (interned strings,
    # shared tuples) resize inside the measured window and charged ~500 B per workload.
    r["workloads"] = d = run_child("bench.state", "workloads", str(size["pods"] // 5))
    rows = [
        ("6", f"store bytes per pod ({r['pods']:,} varied pods)", f"{r['bytes_per_pod']:,.0f} B",
         f"decoded dict {r['raw_dict_bytes_per_pod']:,.0f} B", f"{r['ratio_to_raw']:.3f}", "<= 500 B",
         verdict(r["bytes_per_pod"] <= 500)),
        ("6", "  the decoded Pod Structs kept instead", f"{r['struct_bytes_per_pod']:,.0f} B",
         f"compact {r['bytes_per_pod']:,.0f} B", f"{r['struct_bytes_per_pod'] / r['bytes_per_pod']:.2f}x", "", "info"),
        ("6", "  worst case: every pod its own ReplicaSet", f"{w['bytes_per_pod']:,.0f} B",
         f"decoded dict {w['raw_dict_bytes_per_pod']:,.0f} B", f"{w['ratio_to_raw']:.3f}", "<= 800 B",
         verdict(w["bytes_per_pod"] <= 800)),
        ("6", "  pickled (persisted state)", f"{r['pickled_bytes_per_pod']:,.0f} B",
         f"JSON {r['json_bytes_per_pod']:,.0f} B", f"{r['pickled_bytes_per_pod'] / r['json_bytes_per_pod']:.3f}", "", "info"),
        ("6", f"store bytes per workload ({d['workloads']:,} Deployments, {d['paths_per_workload']:.0f} spec paths)",
         f"{d['bytes_per_workload']:,.0f} B", f"decoded dict {d['raw_dict_bytes_per_workload']:,.0f} B",
         f"{d['ratio_to_raw']:.3f}", "< 2 KB", verdict(d["bytes_per_workload"] < 2048)),
        ("6", "  of which images, labels, spec for diffs (packed)", f"{d['packed_bytes_per_workload']:,.0f} B",
         f"without them {d['bytes_without_spec']:,.0f} B", "", "", "info"),
        ("6", f"  owner index bytes per ReplicaSet ({r['index']['replicasets']:,})",
         f"{r['index']['bytes_per_replicaset']:,.0f} B", f"decoded dict {r['index']['raw_dict_bytes_per_replicaset']:,.0f} B",
         f"{r['index']['bytes_per_replicaset'] / r['index']['raw_dict_bytes_per_replicaset']:.3f}", "< 1 KB",
         verdict(r["index"]["bytes_per_replicaset"] < 1000)),
    ]
    return r, rows


def seven(size):
    r = run_child("bench.delivery", "storm", str(size["storm"]), "10000", timeout=300)
    rows = [
        ("7", f"storm: {r['events']:,} events, backend down, max {r['outbox_max']:,}",
         f"+{r['rss_growth'] / MiB:.1f} MiB RSS", f"bound +{r['bound_growth'] / MiB:.0f} MiB",
         f"{r['rss_growth'] / r['bound_growth']:.2f}", "under bound", verdict(r["rss_growth"] < r["bound_growth"])),
        ("7", "  dropped (oldest of longest queue) | kept", f"{r['dropped']:,}", f"kept {r['depth_after']:,}", "",
         f"= {r['events'] - r['outbox_max']:,}", verdict(r["dropped"] == r["events"] - r["outbox_max"])),
    ]
    return r, rows


def eight(size):
    from bench.sharding import bench_sharding

    r = bench_sharding(trials=size["balance_trials"], leases=size["leases"])
    rows = [("8", f"moved {m['from']} -> {m['to']} replicas (1,000 integr.)", f"{m['moved']:.3f}",
             f"ideal 1/{m['to']} = {m['ideal']:.3f}", f"{m['moved'] / m['ideal']:.2f}", "~ 1.00",
             verdict(abs(m["moved"] / m["ideal"] - 1) < 0.2)) for m in r["moves"]]
    b = r["balance"]
    rows += [
        ("8", "max/mean per replica, 1,000 over 5 (one set)", f"{b['one_set']:.3f}",
         "counts " + "/".join(map(str, b["one_set_counts"])), "", "<= 1.15", verdict(b["one_set"] <= 1.15)),
        ("8", f"  over {b['trials']} id sets: mean | p95", f"{b['mean']:.3f} | {b['p95']:.3f}",
         f"worst {b['worst']:.3f}", f"{100 * b['share_within_1_15']:.0f}% <= 1.15", "<= 1.15",
         verdict(b["mean"] <= 1.15)),
    ]
    rows += [("8", f"death -> full coverage, {d['lease']} s lease ({d['moved']} integr.)", f"{d['seconds']:.1f} s",
              f"lease {d['lease']} s", f"+{d['seconds'] - d['lease']:.1f} s", "<= lease + one list",
              verdict(d["seconds"] <= d["lease"] + 5)) for d in r["death"]]
    return r, rows


def nine(size):
    r = run_child("bench.stall", timeout=900)
    s = r["settings"]
    low, high = r["read_timeout_bound"]

    def took(key):
        found = r[key].get("seconds")
        return "not in 180 s" if found is None else f"{found:.1f} s"
    rows = [
        ("9", "watch cut: change emitted after", took("cut"), "", "", "", "info"),
        ("9", f"held socket (probe every {s['stall_probe_interval']:.0f} s): change emitted after", took("held"),
         f"read timeout alone {low:.0f}-{high:.0f} s", "", "< 90 s",
         verdict(r["held"].get("seconds") is not None and r["held"]["seconds"] < 90)),
        ("9", "whole path held: watch leaves 'watching' after", took("path"),
         f"read timeout alone {low:.0f}-{high:.0f} s", "", "< 90 s",
         verdict(r["path"].get("seconds") is not None and r["path"]["seconds"] < 90)),
        ("9", "dead peer (TCP keepalive idle+interval*count)", f"{r['dead_peer_bound']} s (bound)",
         f"read timeout alone {low:.0f}-{high:.0f} s", "", "", "info"),
    ]
    return r, rows


def ten(size):
    r = run_child("bench.hostile", "20", timeout=120)
    rows = [
        ("10", "RSS while 5 hostile apiservers stream (20 s)", f"+{r['growth'] / MiB:.0f} MiB",
         f"bound +{r['bound'] / MiB:.0f} MiB ({r['readers_per_cluster']} readers/cluster)",
         f"{r['growth'] / r['bound']:.2f}", "under bound",
         verdict(r["growth"] < r["bound"])),
        ("10", "  hostile watches showing their bound's error", str(sum(1 for v in r["errors"].values() if v)),
         f"of {len(r['states'])}", f"{r['bytes_streamed'] / MiB:,.0f} MiB offered", "", "info"),
    ]
    return r, rows


BENCHES = {"1": one, "2": two, "3": three, "4": four_five, "6": six, "7": seven, "8": eight, "9": nine,
           "10": ten}


def table(rows: list[tuple], info: dict) -> str:
    header = ("#", "what", "figure", "ceiling (same run)", "ratio", "target", "verdict")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, {info['implementation']} "
           f"{info['python']}, load avg at start {info['loadavg_at_start']}", line,
           "  ".join(str(h).ljust(w) for h, w in zip(header, widths)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    out.append(line)
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default="1,2,3,4,6,7,8,9,10", help="which benchmarks (5 runs with 4)")
    args = parser.parse_args(argv)
    size = SIZES[args.quick]
    info = machine()
    results = {"machine": info, "quick": args.quick, "sizes": size, "benchmarks": {}, "rows": []}
    rows: list[tuple] = []
    started = time.perf_counter()
    wanted = [k for k in BENCHES if k in {x.strip() if x.strip() != "5" else "4" for x in args.only.split(",")}]
    for key in wanted:
        log(f"#{key} ...")
        t0 = time.perf_counter()
        try:
            raw, found = BENCHES[key](size)
            results["benchmarks"][key] = raw
            rows += found
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            results["benchmarks"][key] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append((key, "FAILED", f"{type(exc).__name__}", "", "", "", "ERROR"))
        log(f"#{key} done in {time.perf_counter() - t0:.0f}s")
    results["rows"] = rows
    results["seconds"] = round(time.perf_counter() - started, 1)
    text = table(rows, info)
    print(text)
    profile = results["benchmarks"].get("1", {}).get("profile")
    if profile and "by_area" in profile:
        print(f"#1 profile (pyinstrument, {profile['file']}), share of storm-mix pipeline time by area: "
              + ", ".join(f"{k} {v}%" for k, v in profile["by_area"].items()))
        print("   top self time: " + ", ".join(f"{name.split(' (')[0]} {v}%" for name, v in profile["top_self"][:8]))
    print(f"total {results['seconds']:.0f}s; results in bench/results.json")
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
