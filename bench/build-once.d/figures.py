"""figures.py: bench/build-once's checks and tables (standard library only).

    figures.py check-run JSON                         the run's last event is a successful `finished`
    figures.py check-releases FILE RELEASE N MODE     `zdd releases --json` (FILE) lists RELEASE on N
                                                      hosts, one artifact hash for them all when MODE
                                                      is `local`, none otherwise
    figures.py report RUNS DELAY_MS                   the Markdown tables of the runs listed in RUNS

RUNS is a tab-separated file, one line per deploy: link, hosts, mode, timed (1) or warm-up (0),
wall clock (µs), the CPU of this side (zdd and what it started, µs), the hosts' CPU (ms), and
the path of the run's `--json` output. A check that fails prints why on stderr and exits 1.
"""

import json
import statistics
import sys

MODES = {
    "hosts": "build on hosts, from scratch",
    "hosts-reuse": "build on hosts, vendor reuse",
    "local": "**build once**",
}

# Task groups of a host's deploy, in the recipe's order (recipes/laravel.rhai).
GROUPS = [
    ("prepare, lock, disk, release", ["deploy:prepare", "deploy:lock", "gate:disk", "deploy:release"]),
    ("update_code", ["deploy:update_code"]),
    ("shared, writable", ["deploy:shared", "deploy:writable"]),
    ("composer", ["deploy:vendors"]),
    ("npm", ["deploy:assets"]),
    ("artisan caches", ["artisan:storage:link", "artisan:config:cache", "artisan:route:cache",
                        "artisan:view:cache", "artisan:event:cache"]),
    ("gates, migrate", ["gate:audit", "gate:tests", "gate:app_key", "gate:queued_jobs",
                        "gate:migrations", "artisan:migrate"]),
    ("swap and after", ["deploy:symlink", "php-fpm:reload", "artisan:reload", "artisan:octane:reload",
                        "artisan:queue:restart", "deploy:health", "deploy:cleanup", "deploy:unlock"]),
]
GROUP_OF = {task: name for name, tasks in GROUPS for task in tasks}


def events(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def finished(evs):
    for e in reversed(evs):
        if e.get("event") == "finished":
            return e
    return None


def check_run(path):
    e = finished(events(path))
    if e is None:
        sys.exit("no `finished` event in " + path)
    if e.get("status") != "success":
        sys.exit("the `finished` event says %r" % e.get("status"))


def check_releases(path, release, n, mode):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    mine = [r for r in rows if r.get("release") == release]
    hosts = sorted({r.get("host") for r in mine})
    if len(hosts) != n:
        sys.exit("release %s is on %d hosts, not %d: %s" % (release, len(hosts), n, hosts))
    artifacts = {r.get("artifact") for r in mine}
    if mode == "local":
        if len(artifacts) != 1 or None in artifacts:
            sys.exit("the hosts' releases %s have artifacts %s, not one" % (release, sorted(map(str, artifacts))))
    elif artifacts != {None}:
        sys.exit("built on the hosts, yet release %s has artifacts %s" % (release, sorted(map(str, artifacts))))


def figures(path):
    """What one run's events say."""
    evs = events(path)
    e = finished(evs)
    groups = {name: 0 for name, _ in GROUPS}
    groups["other"] = 0
    build = {"composer": 0, "npm": 0, "other": 0}
    reused = {"composer": 0, "npm": 0}
    for ev in evs:
        kind, host, task = ev.get("event"), ev.get("host"), ev.get("task")
        if kind == "task_finished" and host == "build":
            name = {"deploy:vendors": "composer", "deploy:assets": "npm"}.get(task, "other")
            build[name] += ev.get("duration_ms", 0)
        elif kind == "task_finished" and host == "web1":
            groups[GROUP_OF.get(task, "other")] += ev.get("duration_ms", 0)
        text = ev.get("text") or ""
        if kind == "message":
            for tool in reused:
                if text.startswith(tool + ": ") and "/ from releases/" in text:
                    reused[tool] += 1
    return {
        "duration": e["duration_ms"],
        "before": e["duration_ms"] - e["preparation_ms"] - e["cutover_ms"],
        "bytes": e["bytes_sent"],
        "requests": e["requests"],
        "zdd_cpu": e["cpu_ms"],
        "build": sum(build.values()),
        "build_composer": build["composer"],
        "build_npm": build["npm"],
        "reused_composer": reused["composer"],
        "reused_npm": reused["npm"],
        **{"group:" + k: v for k, v in groups.items()},
    }


def size(b):
    if b >= 1048576:
        return "%.2f MB" % (b / 1048576)
    if b >= 1024:
        return "%.0f KB" % (b / 1024)
    return "%.0f B" % b


def report(runs_path, delay_ms):
    rows = {}  # (link, n, mode) -> list of figure dicts
    order = []
    for line in open(runs_path):
        link, n, mode, timed, wall_us, side_us, hosts_ms, path = line.rstrip("\n").split("\t")
        if timed != "1":
            continue
        key = (link, int(n), mode)
        if key not in rows:
            rows[key] = []
            order.append(key)
        f = figures(path)
        f.update(wall=int(wall_us) / 1000, side_cpu=int(side_us) / 1000, hosts_cpu=int(hosts_ms))
        rows[key].append(f)

    def med(key, field):
        return statistics.median(r[field] for r in rows[key])

    def label(link):
        return "loopback" if link == "loopback" else "%d ms RTT" % (2 * delay_ms)

    print("| link | hosts | mode | wall ms | duration_ms | before preparation ms | build on this machine ms "
          "| bytes sent/host | requests/host | this side's CPU ms | hosts' CPU ms "
          "| reused vendor/, node_modules/ | build once / this |")
    print("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for key in order:
        link, n, mode = key
        local = (link, n, "local")
        ratio = "-"
        if mode != "local" and local in rows:
            ratio = "**%.2f**" % (med(local, "wall") / med(key, "wall"))
        build = "%.0f" % med(key, "build") if mode == "local" else "-"
        print("| %s | %d | %s | %.0f | %.0f | %.0f | %s | %s | %.0f | %.0f | %.0f | %d/%d, %d/%d | %s |" % (
            label(link), n, MODES[mode], med(key, "wall"), med(key, "duration"), med(key, "before"), build,
            size(med(key, "bytes") / n), med(key, "requests") / n, med(key, "side_cpu"), med(key, "hosts_cpu"),
            med(key, "reused_composer"), n, med(key, "reused_npm"), n, ratio))

    print()
    print("Where the time goes: medians in ms of the build's tasks on this machine (build once) and of "
          "web1's tasks, by group (with several hosts, web1 shares the CPUs with the others):")
    print()
    names = [name for name, _ in GROUPS] + ["other"]
    print("| link | hosts | mode | build: composer | build: npm | " + " | ".join(names) + " |")
    print("|---|--:|---|--:|--:|" + "--:|" * len(names))
    for key in order:
        link, n, mode = key
        cells = ["%.0f" % med(key, "group:" + name) for name in names]
        build = ["%.0f" % med(key, "build_composer"), "%.0f" % med(key, "build_npm")] if mode == "local" else ["-", "-"]
        print("| %s | %d | %s | %s | %s |" % (label(link), n, MODES[mode], " | ".join(build), " | ".join(cells)))

    print()
    print("Target (issue 13): build once faster than building on the hosts from 2 hosts on, "
          "and no slower for one (wall, medians):")
    for key in order:
        link, n, mode = key
        local = (link, n, "local")
        if mode == "local" or local not in rows:
            continue
        a, b = med(local, "wall"), med(key, "wall")
        r = a / b
        ok = r <= 1.0 if n == 1 else r < 1.0
        print("- %s, %d host%s: build once %.0f ms vs %s %.0f ms: **%.2f** (%s)" % (
            label(link), n, "" if n == 1 else "s", a, mode, b, r, "met" if ok else "MISSED"))


def main():
    args = sys.argv[1:]
    if args[:1] == ["check-run"] and len(args) == 2:
        check_run(args[1])
    elif args[:1] == ["check-releases"] and len(args) == 5:
        check_releases(args[1], args[2], int(args[3]), args[4])
    elif args[:1] == ["report"] and len(args) == 3:
        report(args[1], int(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
