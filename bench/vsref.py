"""Side by side with perfSONAR's owampd: `bench/run --vs-ref PREFIX`.

PREFIX is where perfSONAR's owamp was installed (PREFIX/bin/owampd, owping). Both
servers run on loopback with the same configuration (an empty owamp-server.conf, one
unlimited class), `-P 10000-30000`; the clients use `-P 40000-59999`. Each server is
started inside its own cgroup (v1 cpuacct and memory), so every process it forks or
execs is counted: the master, control processes, testers, all of it. Each figure is
taken for both servers in the same run, one after the other, and printed as a ratio.

Rows (issue "Scale and efficiency"):
  - N concurrent bidirectional owpings (-c 100 -i 0.1f -L 3 -M), all started at once,
    with our owping and with the reference's: how many are clean (exit 0, both
    directions SENT 100 and LOST 0);
  - the server tree's CPU (cpuacct.usage) and peak memory (memory.max_usage_in_bytes)
    during each of those runs;
  - server CPU per test packet at 1,000 pps (one owping, 5,000 packets each way);
  - one-way delay median at 1,000 pps, each direction and both (from owping -R);
  - a 10,000-packet burst (-i 0) both ways: packets lost.
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

CG_ROOT = "/sys/fs/cgroup"
SERVER_PORTS = "10000-30000"
CLIENT_PORTS = "40000-59999"


def log(msg):
    import sys
    print(f"[vs-ref {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cgroup:
    """A cgroup v1 pair (cpuacct, memory) holding one server's whole process tree."""

    def __init__(self, name):
        self.dirs = {c: os.path.join(CG_ROOT, c, name) for c in ("cpuacct", "memory")}
        for d in self.dirs.values():
            if os.path.isdir(d):
                self._empty(d)
                os.rmdir(d)
            os.makedirs(d)

    def wrap(self, cmd):
        """`cmd` run from a shell that first moves itself into both groups."""
        moves = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in self.dirs.values())
        return ["sh", "-c", moves + '; exec "$@"', "sh", *cmd]

    def _read(self, ctl, name):
        with open(os.path.join(self.dirs[ctl], name)) as f:
            return int(f.read().split()[0])

    def cpu_ns(self):
        return self._read("cpuacct", "cpuacct.usage")

    def mem_reset(self):
        with open(os.path.join(self.dirs["memory"], "memory.max_usage_in_bytes"), "w") as f:
            f.write("0")

    def mem_peak(self):
        return self._read("memory", "memory.max_usage_in_bytes")

    def procs(self):
        with open(os.path.join(self.dirs["cpuacct"], "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    @staticmethod
    def _empty(d):
        with open(os.path.join(d, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        while time.time() < deadline:
            with open(os.path.join(d, "cgroup.procs")) as f:
                if not f.read().strip():
                    return
            time.sleep(0.05)

    def remove(self):
        for d in self.dirs.values():
            self._empty(d)
            try:
                os.rmdir(d)
            except OSError:
                pass


class Server:
    """One server (ours or the reference) in the foreground, in its own cgroups."""

    def __init__(self, tag, bindir, tmp):
        self.tag = tag
        self.tmp = os.path.join(tmp, tag)
        conf, data, var = (os.path.join(self.tmp, d) for d in ("etc", "data", "var"))
        for d in (conf, data, var):
            os.makedirs(d)
        # The same files for both: built-in defaults, one unlimited class, data
        # deleted once fetched (nothing fetches here).
        open(os.path.join(conf, "owamp-server.conf"), "w").close()
        with open(os.path.join(conf, "owamp-server.limits"), "w") as f:
            f.write("limit root with disk=0, bandwidth=0, delete_on_fetch=on\n"
                    "assign default root\n")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.cg = Cgroup(f"owbench-{tag}-{os.getpid()}")
        cmd = [os.path.join(bindir, "owampd"), "-Z", "-f", "-c", conf, "-d", data, "-R", var,
               "-S", self.addr, "-P", SERVER_PORTS]
        self.logf = open(os.path.join(self.tmp, "owampd.log"), "w")
        log(f"{tag}: " + " ".join(cmd))
        self.proc = subprocess.Popen(self.cg.wrap(cmd), stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{tag} owampd exited {self.proc.returncode}; see {self.logf.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{tag} owampd is not listening after 15 s")

    def settle(self, timeout=60):
        """Waits until only the server's resident processes are left (no session's
        processes from the run before): the master (and, for ours, control and its
        spawner)."""
        resident = 3 if self.tag == "ours" else 1
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.cg.procs()) > resident:
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.cg.remove()
        self.logf.close()


def run_all(cmds, timeout):
    """Starts every command at once, collects (rc, output) of each."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in cmds]
    outs = [""] * len(procs)

    def drain(i, p):
        outs[i] = p.stdout.read()

    threads = [threading.Thread(target=drain, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for t in threads:
        t.join(timeout=5)
    return [(p.returncode, outs[i]) for i, p in enumerate(procs)]


def machine_sums(out):
    sums, cur = [], None
    for line in out.splitlines():
        if line.startswith("SUMMARY"):
            cur = {}
            sums.append(cur)
        elif cur is not None and "\t" in line:
            k, _, v = line.partition("\t")
            if k in ("SENT", "LOST"):
                try:
                    cur[k] = int(v)
                except ValueError:
                    pass
    return sums


def clean(rc, out, count):
    sums = machine_sums(out)
    return rc == 0 and len(sums) == 2 and all(
        s.get("SENT") == count and s.get("LOST") == 0 for s in sums)


def measure(srv, work):
    """Runs `work()` with the server's cgroup counters around it: (result, cpu s, peak MiB)."""
    srv.settle()
    srv.cg.mem_reset()
    c0 = srv.cg.cpu_ns()
    res = work()
    srv.settle()
    return res, (srv.cg.cpu_ns() - c0) / 1e9, srv.cg.mem_peak() / 2**20


def scale_run(srv, owping, n, count=100):
    cmd = [owping, "-c", str(count), "-i", "0.1f", "-L", "3", "-M", "-P", CLIENT_PORTS, srv.addr]
    results = run_all([cmd] * n, timeout=count * 0.1 + 180)
    good = sum(clean(rc, out, count) for rc, out in results)
    why = {}
    for rc, out in results:
        if not clean(rc, out, count):
            sums = machine_sums(out)
            if rc == 0 and len(sums) == 2:
                k = "SENT<{0} or LOST>0".format(count)
            else:
                k = f"rc={rc}: " + ((out.strip().splitlines() or ["(nothing)"])[-1][:100])
            why[k] = why.get(k, 0) + 1
    return good, why


def raw_delays(out):
    """One-way delays (s) from owping -R lines (SEQ STIME SSYNC SERR RTIME RSYNC RERR
    TTL), one list per session in the order owping prints them: client to server, then
    server to client. A session's lines start again at sequence number 0."""
    sessions, last = [], None
    for line in out.splitlines():
        f = line.split()
        if len(f) != 8 or not f[0].isdigit():
            continue
        try:
            seq, s, r = int(f[0]), int(f[1]), int(f[4])
        except ValueError:
            continue
        if last is None or seq < last:
            sessions.append([])
        last = seq
        if r:
            sessions[-1].append((r - s) / 2**32)
    return sessions


def paced_run(srv, owping, count, interval):
    cmd = [owping, "-c", str(count), "-i", interval, "-L", "3", "-R", "-P", CLIENT_PORTS, srv.addr]
    ((rc, out),) = run_all([cmd], timeout=count * 0.01 + 120)
    return rc, out


def floor_sender(tmp):
    """Builds bench/floor-sender.c (gcc) into `tmp` and opens a loopback UDP sink for it
    that a thread drains once a second, as our receiver reads a paced session. Returns
    (command for a mean interval, the sink to close when done), or None (said in the
    log) when it cannot be built. Used by this file and by bench/powstream-vs-ref."""
    exe = os.path.join(tmp, "floor-sender")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor-sender.c")
    try:
        subprocess.run(["gcc", "-O2", "-o", exe, src, "-lm"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"floor-sender not built ({e}): no floor row")
        return None
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = str(sink.getsockname()[1])

    def drain():
        while sink.fileno() >= 0:
            try:
                while sink.recv(2048):
                    pass
            except OSError:  # empty (BlockingIOError), or closed
                pass
            time.sleep(1)
    threading.Thread(target=drain, daemon=True).start()
    return (lambda mean: [exe, port, str(mean)]), sink


def floor_per_packet(tmp):
    """CPU of the least a sender can do for the server's half of the 1,000 pps run:
    bench/floor-sender.c (a sleep to each send time, a clock read and a send on a
    connected socket, nothing else) sending 5,000 packets at a mean 1 ms, in a cgroup of
    its own; divided by 10,000 as the server's figure is. None when it cannot be built."""
    floor = floor_sender(tmp)
    if floor is None:
        return None
    cmd, sink = floor
    cg = Cgroup(f"owvsref-floor-{os.getpid()}")
    try:
        c0 = cg.cpu_ns()
        p = subprocess.Popen(cg.wrap(cmd(0.001)))
        time.sleep(5)  # about 5,000 packets
        p.kill()
        p.wait()
        used = (cg.cpu_ns() - c0) / 1e9
    finally:
        cg.remove()
        sink.close()
    log(f"floor-sender: {used * 1e3:.1f} ms CPU for about 5,000 packets")
    return used / 10000 * 1e6


def fmt_ratio(a, b):
    return f"{a / b:.2f}×" if b else "—"


def summarise(runs):
    """(median, min, max) of each of clean, CPU and memory over a server's rounds."""
    return [(statistics.median(v), min(v), max(v)) for v in zip(*runs)]


def spread(stat, fmt, unit):
    """'median unit' for one round, 'median unit (min–max)' for more."""
    med, lo, hi = stat
    if lo == hi:
        return fmt.format(med) + unit
    return f"{fmt.format(med)}{unit} ({fmt.format(lo)}–{fmt.format(hi)})"


def compare(ref_prefix, rel, ns, rows, rounds=1):
    """Appends (figure, ours, reference, ratio) rows for every measurement.

    Each scale figure is taken `rounds` times per server, the two servers alternating
    (ours first in odd rounds, the reference first in even ones, so neither always runs
    on a machine the other just warmed or loaded); a row then gives the median and the
    range, and the ratio of the medians. One round at N=2000 on two cores swings by a
    few hundred sessions either way, for both servers.
    """
    ref_bin = os.path.join(ref_prefix, "bin")
    clients = {"our owping": os.path.join(rel, "owping"),
               "perfSONAR's owping": os.path.join(ref_bin, "owping")}
    tmp = tempfile.mkdtemp(prefix="owvsref.")
    servers = {}
    try:
        servers["ours"] = Server("ours", rel, tmp)
        servers["ref"] = Server("ref", ref_bin, tmp)
        for n in ns:
            for cname, client in clients.items():
                fig = {"ours": [], "ref": []}
                for k in range(rounds):
                    order = ("ours", "ref") if k % 2 == 0 else ("ref", "ours")
                    for tag in order:
                        log(f"N={n} with {cname} against {tag}" +
                            (f", round {k + 1} of {rounds}" if rounds > 1 else ""))
                        (good, why), cpu, mem = measure(servers[tag],
                                                        lambda: scale_run(servers[tag], client, n))
                        fig[tag].append((good, cpu, mem))
                        log(f"  {tag}: {good}/{n} clean, {cpu:.2f} s CPU, {mem:.0f} MiB peak {why or ''}")
                o, r = summarise(fig["ours"]), summarise(fig["ref"])
                rows.append((f"N={n} concurrent owpings, clean ({cname})",
                             spread(o[0], "{:.0f}", f"/{n}"), spread(r[0], "{:.0f}", f"/{n}"),
                             fmt_ratio(o[0][0], r[0][0])))
                rows.append((f"N={n} server tree CPU ({cname})",
                             spread(o[1], "{:.2f}", " s"), spread(r[1], "{:.2f}", " s"),
                             fmt_ratio(o[1][0], r[1][0])))
                rows.append((f"N={n} server tree peak memory ({cname})",
                             spread(o[2], "{:.0f}", " MiB"), spread(r[2], "{:.0f}", " MiB"),
                             fmt_ratio(o[2][0], r[2][0])))
        ours_owping = clients["our owping"]
        # What a session costs before its packets: 100 bidirectional owpings of one
        # packet each way (connection, handshake, two test sessions, their files).
        fixed = {}
        for tag in ("ours", "ref"):
            log(f"N=100 with -c 1 against {tag}")
            (good, why), cpu, _ = measure(servers[tag],
                                          lambda: scale_run(servers[tag], ours_owping, 100, 1))
            fixed[tag] = cpu * 1000 / 100
            log(f"  {tag}: {good}/100 clean, {fixed[tag]:.2f} ms CPU per owping {why or ''}")
        rows.append(("server CPU per owping of 1 packet each way (N=100 at once)",
                     f"{fixed['ours']:.2f} ms", f"{fixed['ref']:.2f} ms",
                     fmt_ratio(fixed["ours"], fixed["ref"])))
        per_pkt, median = {}, {}
        for tag in ("ours", "ref"):
            log(f"1,000 pps, 5,000 packets each way, against {tag}")
            (rc, out), cpu, _ = measure(servers[tag],
                                       lambda: paced_run(servers[tag], ours_owping, 5000, "0.001f"))
            sessions = raw_delays(out)
            per_pkt[tag] = cpu / 10000 * 1e6
            # Client to server, server to client, both: our owping sends and receives
            # the client's ends in both runs, so each direction isolates one side of
            # the server (its receiver's timestamps, then its sender's).
            median[tag] = [statistics.median(d) * 1e6 if d else float("nan")
                           for d in (sessions + [[], []])[:2] + [[x for d in sessions for x in d]]]
            got = sum(len(d) for d in sessions)
            log(f"  rc={rc}, {got} delays, {per_pkt[tag]:.1f} µs/packet, medians "
                + " / ".join(f"{m:.1f}" for m in median[tag]) + " µs")
        rows.append(("server CPU per test packet at 1,000 pps (5,000 each way)",
                     f"{per_pkt['ours']:.1f} µs", f"{per_pkt['ref']:.1f} µs",
                     fmt_ratio(per_pkt["ours"], per_pkt["ref"])))
        floor = floor_per_packet(tmp)
        if floor is not None:
            rows.append(("floor of the same figure: bench/floor-sender.c sending the "
                         "server's 5,000 (sleep, clock read, send), per 10,000 packets",
                         f"{floor:.1f} µs", f"{per_pkt['ref']:.1f} µs",
                         fmt_ratio(floor, per_pkt["ref"])))
        for i, what in enumerate(("client to server: the server's receive timestamps",
                                  "server to client: the server's send timestamps",
                                  "both directions")):
            o, r = median["ours"][i], median["ref"][i]
            rows.append((f"one-way delay median at 1,000 pps, {what}",
                         f"{o:.1f} µs", f"{r:.1f} µs", fmt_ratio(o, r)))
        lost = {}
        for tag in ("ours", "ref"):
            log(f"10,000-packet burst against {tag}")
            (rc, out), _, _ = measure(servers[tag],
                                      lambda: paced_run(servers[tag], ours_owping, 10000, "0"))
            got = sum(len(d) for d in raw_delays(out))
            lost[tag] = 20000 - got if rc == 0 else f"rc={rc}"
        rows.append(("10,000-packet burst (-i 0) each way: lost of 20,000",
                     str(lost["ours"]), str(lost["ref"]), "—"))
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def table(rows):
    out = ["| figure | owampd-rs | perfSONAR owampd | ratio |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)
