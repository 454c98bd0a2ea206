#!/usr/bin/python3
"""The agent's sd_notify messages, received on a NOTIFY_SOCKET of our own
(a datagram socket, as systemd's is), with the sender's credentials
(SO_PASSCRED), so each message is known to come from the agent's pid:

  - READY=1 comes only when the agent serves: the moment it arrives, a
    Health call succeeds on each socket (made from here, within
    microseconds), then a token is fetched on the workload socket for an
    entry registered in an earlier run (so keys and entries are loaded),
    and the entries are listed on the admin socket, each on the first try
    with no retry;
  - STATUS= comes with it, counting the entries;
  - with WATCHDOG_USEC=2000000, WATCHDOG=1 keeps coming, at least once
    per period;
  - on SIGTERM, STOPPING=1 comes, then the agent exits 0.

Usage: test_sd_notify.py AGENT SOCKID
"""
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

PR_SET_PDEATHSIG = 1
WATCHDOG_USEC = 2000000


def fail(msg):
    print("FAIL: %s" % msg, file=sys.stderr)
    raise SystemExit(1)


def note(msg):
    print(msg, flush=True)


class Agent:
    """An agent process with its log; killed if the test dies."""

    def __init__(self, agent, tmp, name, env):
        self.log_path = os.path.join(tmp, name + ".log")
        self.log = open(self.log_path, "ab")
        libc = ctypes.CDLL(None, use_errno=True)

        def child():
            # Killed with us (a ctest timeout), and SIGTERM/SIGINT at their
            # defaults whatever we inherited.
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        self.proc = subprocess.Popen(
            [agent, "--socket", os.path.join(tmp, "agent.sock"),
             "--admin-socket", os.path.join(tmp, "admin.sock"),
             "--data-dir", os.path.join(tmp, "data")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
            preexec_fn=child)

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(cmd, timeout=30):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, text=True)


def raw_health(path):
    """A Health call on a fresh connection, with no retry: the framed
    protobuf by hand (Request.health is field 5 on both sockets, an empty
    message; Response.health is field 6), so that it can be made the
    instant READY=1 arrives, before any program could start. Returns None
    when answered, or what went wrong."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(struct.pack(">I", 2) + b"\x2a\x00")
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                return "the connection closed before an answer"
            head += chunk
        (n,) = struct.unpack(">I", head)
        body = b""
        while len(body) < n:
            chunk = s.recv(n - len(body))
            if not chunk:
                return "the connection closed in the middle of an answer"
            body += chunk
        if not body or body[0] != 0x32:
            return "the answer is not a Health response: %r" % body[:16]
        return None
    except OSError as e:
        return str(e)
    finally:
        s.close()


def wait_answering(sockid, sock, agent, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if agent.proc.poll() is not None:
            fail("the agent exited during startup:\n" + agent.text())
        if run([sockid, "health", "--socket", sock, "--timeout", "1000"]).returncode == 0:
            return
        time.sleep(0.02)
    fail("the agent did not answer within %d s" % seconds)


class Notify:
    """A NOTIFY_SOCKET: datagrams with the sender's pid."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages = []  # (monotonic time, sender pid, [lines])

    def receive(self, timeout):
        """One message, or None after timeout seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        lines = data.decode("utf-8", "replace").split("\n")
        m = (time.monotonic(), pid, [l for l in lines if l])
        self.messages.append(m)
        return m

    def wait_for(self, line, seconds, pid, what):
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("no %s within %s s; messages so far: %s" % (
                    line, seconds, [m[2] for m in self.messages]))
            m = self.receive(left)
            if m is None:
                continue
            if m[1] != pid:
                fail("a notify message came from pid %s, not the agent's %d: %s" % (m[1], pid, m[2]))
            if line in m[2]:
                return m


def main(argv):
    if len(argv) != 3:
        print("usage: test_sd_notify.py AGENT SOCKID", file=sys.stderr)
        return 2
    agent_path, sockid = argv[1], argv[2]
    tmp = tempfile.mkdtemp(prefix="sockid-notify.")
    os.chmod(tmp, 0o755)
    agents = []
    ok = False
    try:
        sock = os.path.join(tmp, "agent.sock")
        admin = os.path.join(tmp, "admin.sock")
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                  "LISTEN_PID", "LISTEN_FDNAMES", "SOCKID_AGENT_SOCKET", "SOCKID_ADMIN_SOCKET"):
            env.pop(k, None)

        # An earlier run registers the entry, so that READY=1 can be checked
        # to come after entries and keys are loaded.
        ident = "spiffe://example.org/notify"
        sockid_real = os.path.realpath(sockid)
        first = Agent(agent_path, tmp, "first", env)
        agents.append(first)
        wait_answering(sockid, sock, first)
        r = run([sockid, "entry", "create", "--admin-socket", admin, "--timeout", "10000",
                 "--spiffe-id", ident, "--selector", "unix:uid:%d" % os.getuid(),
                 "--selector", "unix:path:%s" % sockid_real])
        if r.returncode != 0:
            fail("sockid entry create: %s" % r.stderr.strip())
        first.proc.send_signal(signal.SIGTERM)
        if first.proc.wait(timeout=20) != 0:
            fail("the first agent exited with status %d" % first.proc.returncode)

        # The run under test.
        notify = Notify(os.path.join(tmp, "notify.sock"))
        env["NOTIFY_SOCKET"] = os.path.join(tmp, "notify.sock")
        env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        started = time.monotonic()
        agent = Agent(agent_path, tmp, "agent", env)
        agents.append(agent)
        pid = agent.proc.pid

        ready = notify.wait_for("READY=1", 30, pid, "READY=1")
        for path in (sock, admin):
            why = raw_health(path)
            if why:
                fail("READY=1 had come, but a Health call on %s at once failed: %s" % (path, why))
        # Then, each on the first try: a token for the stored entry on
        # the workload socket, the entries on the admin socket.
        r = run([sockid, "fetch", "--socket", sock, "--timeout", "10000", "--audience", "db"])
        if r.returncode != 0:
            fail("READY=1 had come, but sockid fetch failed (exit %d): %s" % (
                r.returncode, r.stderr.strip()))
        r = run([sockid, "entry", "list", "--admin-socket", admin, "--timeout", "10000"])
        if r.returncode != 0 or ident not in r.stdout:
            fail("READY=1 had come, but sockid entry list failed or lacks %s (exit %d): %s" % (
                ident, r.returncode, (r.stdout + r.stderr).strip()))
        note("READY=1 after %.0f ms, from the agent's pid %d; a token and the entry list were "
             "answered at once" % ((ready[0] - started) * 1000, pid))
        status = [l for l in ready[2] if l.startswith("STATUS=")]
        if not status or "serving 1 entries" not in status[0]:
            fail("READY=1 came without a STATUS= line counting 1 entry: %s" % ready[2])
        note("with it: %s" % status[0])
        # Nothing said READY before that message.
        early = [m for m in notify.messages[:-1] if "READY=1" in m[2]]
        if early:
            fail("READY=1 came more than once: %s" % early)

        # The watchdog: several pings, none more than a second apart.
        pings = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            m = notify.receive(deadline - time.monotonic())
            if m and m[1] == pid and "WATCHDOG=1" in m[2]:
                pings.append(m[0])
        if len(pings) < 3:
            fail("with WATCHDOG_USEC=%d, only %d WATCHDOG=1 in 3.5 s" % (WATCHDOG_USEC, len(pings)))
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # The agent pings every quarter period while all its loops go round;
        # the contract with the manager is one ping per period. (A loop the
        # scheduler starves for half a period withholds a ping on purpose:
        # the agent then logs "has not gone round".)
        if max(gaps) > WATCHDOG_USEC / 1e6:
            fail("WATCHDOG=1 pings %.2f s apart, more than the period of %.1f s; the agent "
                 "logged: %s" % (max(gaps), WATCHDOG_USEC / 1e6,
                                 [l for l in agent.text().splitlines() if "watchdog" in l]))
        note("WATCHDOG=1: %d pings in 3.5 s, at most %.0f ms apart" % (len(pings), max(gaps) * 1000))

        # Stopping.
        agent.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", 20, pid, "STOPPING=1")
        try:
            code = agent.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("the agent did not exit within 20 s of SIGTERM")
        if code != 0:
            fail("the agent exited with status %d on SIGTERM" % code)
        note("STOPPING=1 on SIGTERM, then exit status 0")
        ok = True
        print("PASS: READY=1 only once the agent serves, WATCHDOG=1 while it runs, STOPPING=1 on SIGTERM")
        return 0
    finally:
        for a in agents:
            a.kill()
            if not ok:
                sys.stderr.write("---- %s ----\n%s---- end ----\n" % (a.log_path, a.text()))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
