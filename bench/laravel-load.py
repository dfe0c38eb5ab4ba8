#!/usr/bin/env python3
"""Load generator and report for bench/laravel-deploy (standard library only).

    laravel-load.py run OUT.tsv LABEL=URL... [--clients N] [--think-ms MS]
        N client threads per LABEL=URL request /version, /slow?ms=200 and /health in turn
        (each client starts at a different route) until SIGTERM or SIGINT, then write one line
        per request to OUT.tsv: label, route, start (Unix seconds, the clock bash's
        $EPOCHREALTIME reads), latency ms, HTTP status (0: no answer), error, mixed.

    laravel-load.py report REQUESTS.tsv TIMELINE.tsv
        Markdown tables: deploy times per tool and gate, where the time goes, and the latency
        the clients saw overall and during the swap windows of each stack.

Why a new connection per request: nginx is never reloaded by a deploy, so keep-alive would
hide nothing, but a fresh connect is what most clients of a real site do, and it makes a
refused or reset connection show up as an error on the request that met it.
"""

import http.client
import math
import re
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict

ROUTES = ["/version", "/slow?ms=200", "/health"]
SLOW = re.compile(rb"start=(\S+) end=(\S+)")


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def client(label, host, port, first_route, think, stop, results):
    """Request the routes in turn until `stop` is set; append one tuple per request."""
    turn = first_route
    while not stop.is_set():
        route = ROUTES[turn % len(ROUTES)]
        turn += 1
        started = time.time()  # wall clock: lined up later with the deploys' timestamps
        t0 = time.perf_counter()  # monotonic: the latency itself
        status, error, mixed = 0, "", 0
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request("GET", route, headers={"Connection": "close"})
            response = connection.getresponse()
            body = response.read()
            status = response.status
            # A request that starts in one release and ends in another breaks meaning 2 of
            # "zero downtime" (DESIGN.md); /slow reports both ends.
            match = SLOW.search(body) if route.startswith("/slow") else None
            if match and match.group(1) != match.group(2):
                mixed = 1
        except (OSError, http.client.HTTPException) as e:
            error = type(e).__name__
        finally:
            connection.close()
        latency = (time.perf_counter() - t0) * 1000
        results.append((label, route.split("?")[0], started, latency, status, error, mixed))
        if think:
            stop.wait(think)


def run(argv):
    out, targets, clients, think = None, [], 6, 0.0
    args = iter(argv)
    for arg in args:
        if arg == "--clients":
            clients = int(next(args))
        elif arg == "--think-ms":
            think = float(next(args)) / 1000
        elif out is None:
            out = arg
        else:
            label, _, url = arg.partition("=")
            hostport = url.split("//", 1)[1].rstrip("/")
            host, _, port = hostport.partition(":")
            targets.append((label, host, int(port)))
    if out is None or not targets:
        sys.exit("usage: laravel-load.py run OUT.tsv LABEL=http://HOST:PORT... [--clients N] [--think-ms MS]")

    stop = threading.Event()
    # Handlers only set the flag: each client finishes the request it is in, so none is
    # counted as failed because the bench ended.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    results = []  # list.append is atomic under the GIL
    threads = [
        threading.Thread(target=client, args=(label, host, port, i, think, stop, results), daemon=True)
        for label, host, port in targets
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    while not stop.is_set():
        stop.wait(0.5)
    for thread in threads:
        thread.join(timeout=35)
    with open(out, "w") as f:
        for label, route, started, latency, status, error, mixed in sorted(results, key=lambda r: r[2]):
            f.write(f"{label}\t{route}\t{started:.6f}\t{latency:.3f}\t{status}\t{error}\t{mixed}\n")


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def percentile(values, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def read_timeline(path):
    """TIMELINE.tsv lines: deploy id, tool, gate, timed (0/1), Unix seconds, kind, task.
    kind: begin (before the process started), task (a task started), end (the process exited)."""
    deploys = {}
    with open(path) as f:
        for line in f:
            deploy, tool, gate, timed, at, kind, task = line.rstrip("\n").split("\t")
            d = deploys.setdefault(deploy, {"tool": tool, "gate": gate, "timed": timed == "1", "marks": []})
            d["marks"].append((float(at), kind, task))
    for d in deploys.values():
        marks = d["marks"]
        d["begin"] = next(at for at, kind, _ in marks if kind == "begin")
        d["end"] = next(at for at, kind, _ in marks if kind == "end")
        d["total"] = d["end"] - d["begin"]
        # A task lasts until the next one starts (or the process exits): the same rule for
        # both tools, so per-step figures compare, and nothing between tasks goes unseen.
        tasks = [(at, task) for at, kind, task in marks if kind == "task"]
        d["steps"] = {}
        for (at, task), (next_at, _) in zip(tasks, tasks[1:] + [(d["end"], None)]):
            d["steps"][task] = d["steps"].get(task, 0) + next_at - at
        d["startup"] = (tasks[0][0] if tasks else d["end"]) - d["begin"]
        # The swap window: from the start of the swap to the end of the php-fpm reload.
        names = [task for _, task in tasks]
        if "deploy:symlink" in names and "php-fpm:reload" in names:
            after = names.index("php-fpm:reload") + 1
            end = tasks[after][0] if after < len(tasks) else d["end"]
            d["window"] = (tasks[names.index("deploy:symlink")][0], end)
    return deploys


# Steps grouped as the pipeline reads, for "where the time goes". A task in no group
# (a step added to the recipe later) lands in "other tasks", named under the table.
GROUPS = [
    ("start-up (process, recipe)", lambda t: t == "(start-up)"),
    ("release, fetch, checkout, shared, writable", lambda t: t in (
        "deploy:prepare", "deploy:lock", "deploy:release", "deploy:update_code",
        "deploy:shared", "deploy:writable")),
    ("composer install", lambda t: t == "deploy:vendors"),
    ("npm (skipped: no package.json)", lambda t: t == "deploy:assets"),
    ("artisan storage:link + 4 caches", lambda t: t.startswith("artisan:") and t.endswith(("cache", "link"))),
    ("pre-swap gates (gate:*, not in the seed)", lambda t: t.startswith("gate:")),
    ("artisan migrate", lambda t: t == "artisan:migrate"),
    ("swap (+ queue:restart just before it) + php-fpm reload", lambda t: t in ("deploy:symlink", "php-fpm:reload")),
    ("reload/octane/horizon (detection) + other restarts", lambda t: t in (
        "artisan:reload", "artisan:octane:reload", "artisan:queue:restart")),
    ("health gate", lambda t: t == "deploy:health"),
    ("cleanup, unlock", lambda t: t in ("deploy:cleanup", "deploy:unlock")),
]
TOOLS = ["zdd", "zdd-seed", "bash"]


def stack_of(tool):
    """Both zdd tools deploy to the zdd stack."""
    return "bash" if tool == "bash" else "zdd"


def ms(seconds):
    return f"{seconds * 1000:.0f}"


def report(argv):
    requests_path, timeline_path = argv
    deploys = read_timeline(timeline_path)
    # In deploy order: the k-th timed deploy of each tool in a gate ran in the same round.
    timed = [d for _, d in sorted(deploys.items(), key=lambda kv: int(kv[0])) if d["timed"]]
    gates = list(dict.fromkeys(d["gate"] for d in timed))
    tools = [t for t in TOOLS if any(d["tool"] == t for d in timed)]

    def runs(gate, tool):
        return [d for d in timed if d["gate"] == gate and d["tool"] == tool]

    print("Deploy wall time (process start to exit), per tool:\n")
    print("| health gate | tool | runs | median ms | min ms | max ms | ratio to bash | per-round ratio |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for gate in gates:
        bash = [d["total"] for d in runs(gate, "bash")]
        for tool in tools:
            totals = [d["total"] for d in runs(gate, tool)]
            median = statistics.median(totals)
            if tool == "bash":
                ratio = paired = ""
            else:
                # The ratio of the medians, and the median of each round's own ratio.
                ratio = f"**{median / statistics.median(bash):.2f}**"
                paired = f"{statistics.median(z / b for z, b in zip(totals, bash)):.2f}"
            print(f"| {gate} | {tool} | {len(totals)} | {ms(median)} | {ms(min(totals))} | {ms(max(totals))} "
                  f"| {ratio} | {paired} |")

    # Where the time goes: per group, the median over the runs of the group's time in a run.
    print("\nWhere the time goes (median ms per step group; a step lasts until the next one starts):\n")
    print("| step | " + " | ".join(f"{t} ({g})" for g in gates for t in tools) + " |")
    print("|---|" + "--:|" * (len(gates) * len(tools)))
    others = set()
    for d in timed:
        d["steps"]["(start-up)"] = d["startup"]
        others |= {k for k in d["steps"] if not any(member(k) for _, member in GROUPS)}
    groups = GROUPS + ([("other tasks", lambda t: t in others)] if others else [])
    for name, member in groups:
        cells = [ms(statistics.median(sum(v for k, v in d["steps"].items() if member(k)) for d in runs(gate, tool)))
                 for gate in gates for tool in tools]
        print(f"| {name} | " + " | ".join(cells) + " |")
    cells = [ms(statistics.median(d["total"] for d in runs(gate, tool))) for gate in gates for tool in tools]
    print("| **total** (median of the totals) | " + " | ".join(cells) + " |")
    if others:
        print(f"\nother tasks: {', '.join(sorted(others))}")

    # Latency: every request, and the requests in flight during a swap window of the deploys
    # to the stack they were sent to (the zdd stack during zdd's swaps, bash's during bash's).
    rows = []
    with open(requests_path) as f:
        for line in f:
            label, route, started, latency, status, error, mixed = line.rstrip("\n").split("\t")
            rows.append((label, route, float(started), float(latency), int(status), error, int(mixed)))
    windows = defaultdict(list)
    for d in timed:
        if "window" in d:
            windows[stack_of(d["tool"])].append(d["window"])
    first = min(d["begin"] for d in timed)

    # The deploys' step lines are stamped when the bench reads them, a little after the step
    # began (a few ms, tens on a busy machine): windows start EARLY seconds before their stamp.
    early = 0.05

    def in_window(row, pad):
        label, _, started, latency, *_ = row
        finished = started + latency / 1000
        # In flight at some moment of [swap start - early, reload end + pad].
        return any(started <= end + pad and finished >= start - early for start, end in windows[label])

    print("\nLatency seen by the load generator, in ms, per stack. Requests: all (from the first timed "
          "deploy on); swap window: in flight at some moment between the start of deploy:symlink "
          "(less 50 ms: steps are time-stamped as the bench reads them) and "
          "the end of php-fpm:reload of a deploy to that stack (both zdd tools deploy to the zdd "
          "stack); swap window + 1 s: the same, the window 1 s longer (php-fpm re-executes after "
          "the signal, so its stall outlasts the window); all others: the rest, the baseline. "
          "errors: non-2xx or no answer; mixed: /slow began and ended in different releases; "
          "short: /slow answered before its 200 ms sleep was over.\n")
    print("| stack | requests | route | n | p50 | p99 | max | errors | mixed | short |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
    stacks = [s for s in ("zdd", "bash") if windows[s]]
    for label in stacks:
        mine = [r for r in rows if r[0] == label and r[2] >= first]
        selections = [
            ("all", mine),
            ("swap window", [r for r in mine if in_window(r, 0)]),
            ("swap window + 1 s", [r for r in mine if in_window(r, 1.0)]),
            ("all others", [r for r in mine if not in_window(r, 1.0)]),
        ]
        for what, selected in selections:
            for route_name, routes in (("/version, /health", ("/version", "/health")), ("/slow?ms=200", ("/slow",))):
                chosen = [r for r in selected if r[1] in routes]
                if not chosen:
                    print(f"| {label} | {what} | {route_name} | 0 | | | | | | |")
                    continue
                latencies = [r[3] for r in chosen]
                errors = sum(1 for r in chosen if not 200 <= r[4] < 300)
                mixed = sum(r[6] for r in chosen)
                # php-fpm's reload signals the workers; a sleep() in flight then returns early.
                short = sum(1 for r in chosen if r[3] < 200) if "/slow" in routes else ""
                print(f"| {label} | {what} | {route_name} | {len(chosen)} | {percentile(latencies, 50):.0f} "
                      f"| {percentile(latencies, 99):.0f} | {max(latencies):.0f} | {errors} | {mixed} | {short} |")
    print()
    for tool in tools:
        w = [d["window"][1] - d["window"][0] for d in timed if d["tool"] == tool and "window" in d]
        if w:
            print(f"- {tool} swap windows: {len(w)}, median {ms(statistics.median(w))} ms, max {ms(max(w))} ms")
    kinds = defaultdict(int)
    for r in rows:
        if r[5] or not 200 <= r[4] < 300:
            kinds[(r[0], r[5] or f"HTTP {r[4]}")] += 1
    if kinds:
        print("- failed requests by kind: " + ", ".join(f"{label} {kind}: {n}" for (label, kind), n in sorted(kinds.items())))


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "report"):
        sys.exit(__doc__)
    (run if sys.argv[1] == "run" else report)(sys.argv[2:])


if __name__ == "__main__":
    main()
