"""measure.py OUT COMMAND...: bench/fleet's measuring wrapper, for bench/build-once.

Runs COMMAND as a child subreaper; writes to OUT "wall_us cpu_us orphans_cpu_us orphans": the
wall clock from before the fork to COMMAND's exit, the CPU of COMMAND and of what it reaped
(for zdd: its ssh clients, and the local build's composer, npm and node), and of the orphans
reaped here (a delay-proxy ssh did not wait for). Exits with COMMAND's status.
"""
import ctypes, os, signal, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
out, command = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGINT, signal.SIG_IGN)  # zdd gets Ctrl-C itself; reap what it leaves
start = time.monotonic()
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(command[0], command)
wall = cpu = None
orphans_cpu, orphans, status, deadline = 0.0, 0, 1, None
while True:
    try:
        if deadline is None:
            got, code, usage = os.wait4(-1, 0)
        else:  # zdd is done: what is left gets 5 s to end
            got, code, usage = os.wait4(-1, os.WNOHANG)
            if got == 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
                continue
    except ChildProcessError:
        break
    used = usage.ru_utime + usage.ru_stime
    if got == pid:
        wall, cpu = time.monotonic() - start, used
        status = os.waitstatus_to_exitcode(code)
        deadline = time.monotonic() + 5
    else:
        orphans_cpu += used
        orphans += 1
with open(out, "w") as f:
    f.write("%d %d %d %d\n" % (wall * 1e6, cpu * 1e6, orphans_cpu * 1e6, orphans))
sys.exit(status if status >= 0 else 128 - status)
