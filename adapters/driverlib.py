"""The driver side of sixpac's driver protocol (docs/driver-protocol.md), for the Python
drivers in adapters/: the hello, the command loop, and the answers. A driver supplies its
client's name, version and `can` list, and a function that carries out one intent."""
import json
import os
import pty
import subprocess
import sys
import threading


class Failed(Exception):
    """A command that did not succeed: `fail` (the system under test did wrong), `error` (the
    client or driver broke) or `inconclusive` (the client cannot do this)."""

    def __init__(self, verdict, reason):
        super().__init__(reason)
        self.verdict = verdict


def send(obj):
    """One protocol object on stdout (nothing else may go there)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def event(name, text=None, **details):
    """Report something the client did on its own (see the protocol's list of events)."""
    send({"type": "event", "event": name, "text": text, "details": details})


class OneClient:
    """A driver that plays its actor with one client process, started by the first login and
    ended by logout or `bye`. `self.client` is that process's handle (with a `stop()`)."""

    def __init__(self):
        self.client = None

    def running(self, action):
        """The client, or an error: `action` needs it logged in."""
        if self.client is None:
            raise Failed("error", f"`{action}` before connect")
        return self.client

    def stop(self):
        if self.client is not None:
            self.client.stop()
            self.client = None


def spawn_on_pty(argv, env, stderr=None):
    """Start a curses client on a pseudo-terminal of its own, whose screen output is thrown
    away; its stderr goes to the terminal too unless `stderr` says otherwise."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave if stderr is None else stderr, env=env, close_fds=True)
    os.close(slave)

    def drain():
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    return proc


def quit_or_kill(proc, ask, within=3):
    """Ask a running client to quit (`ask()`; its errors mean it is going anyway), give it
    `within` seconds, then kill it. Every driver's stop ends its client this way."""
    if proc.poll() is None:
        try:
            ask()
        except Exception:
            pass
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_hello():
    """sixpac's hello (for a driver that must know the actor before it answers)."""
    return json.loads(sys.stdin.readline())


def serve(name, version, can, perform, stop, hello=None):
    """Answer sixpac's hello (read here unless given), then each command with
    `perform(setup, intent)` (which returns on success and raises Failed otherwise), until
    `bye` or the end of input; then `stop()`."""
    hello = hello or read_hello()
    send({"type": "hello", "protocol": hello["protocol"], "name": name, "version": version, "can": can})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg["type"] == "bye":
                break
            cid, setup, intent = msg["id"], msg["setup"], msg["intent"]
            try:
                perform(setup, intent)
                send({"type": "done", "id": cid})
            except Failed as e:
                send({"type": "failed", "id": cid, "verdict": e.verdict, "reason": str(e)})
            except Exception as e:  # the driver's own bug: an error, said as such
                print(f"{name} driver: {intent['action']}: {e!r}", file=sys.stderr, flush=True)
                send({"type": "failed", "id": cid, "verdict": "error", "reason": f"{name} driver: {e!r}"})
    finally:
        stop()
