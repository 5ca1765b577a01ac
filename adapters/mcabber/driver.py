#!/usr/bin/env python3
"""sixpac driver for mcabber (Debian's mcabber 1.1), a console XMPP client.

Speaks sixpac's driver protocol (docs/driver-protocol.md) and plays one XMPP actor with one
mcabber process: commands go in through mcabber's FIFO module, what mcabber reports comes back
through its `events_command` hook and its trace log. mcabber is a curses program, so it runs
on a pseudo-terminal of its own, whose screen output is thrown away.

It connects to the tap only (`server 127.0.0.1`, the tap's port), negotiates STARTTLS when the
actor asks for it, and trusts only the run's CA (`ssl_ca`). Its stderr carries mcabber's
trace log, as the client's log.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from driverlib import Failed, OneClient, event, quit_or_kill, serve, spawn_on_pty  # noqa: E402

CAN = ["connect", "disconnect", "chat", "set-presence", "add-contact", "approve-contact", "deny-contact", "pre-approve-contact", "cancel-subscription"]
STEP = 10.0
# sixpac's show values -> mcabber's /status words.
SHOW = {"available": "online", "away": "away", "chat": "free", "dnd": "dnd", "xa": "notavail"}



def version():
    out = subprocess.run(["mcabber", "-V"], capture_output=True, text=True, timeout=5)
    words = (out.stdout + out.stderr).split()
    return next((w for w in words if w[:1].isdigit()), "unknown")



class Mcabber:
    def __init__(self, setup):
        acc = setup["account"]
        tap = setup["taps"]["xmpp"]
        if not tap:
            raise Failed("inconclusive", "no XMPP tap")
        host, port = tap.rsplit(":", 1)
        self.dir = tempfile.mkdtemp(prefix=f"sixpac-{os.getpid()}-mcabber-")
        self.fifo = os.path.join(self.dir, "fifo")
        self.trace = os.path.join(self.dir, "trace")
        self.events = os.path.join(self.dir, "events")
        hook = os.path.join(self.dir, "event.sh")
        with open(hook, "w") as f:
            f.write(f"#!/bin/sh\necho \"$*\" >> {self.events}\n")
        os.chmod(hook, 0o700)
        tls = setup["xmpp_tls"]
        lines = [
            f"set jid = {acc['user']}@{acc['domain']}",
            f"set password = {acc['password']}",
            f"set server = {host}",
            f"set port = {port}",
            "set resource = mcabber",
            "set disable_random_resource = 1",
            f"set tls = {1 if tls else 0}",
        ]
        # mcabber (loudmouth) takes up STARTTLS whenever it is offered, even with tls = 0, so
        # it always gets the run's CA to check the tap's certificate against.
        if setup.get("ca_file"):
            lines += ["set ssl_verify = 1", f"set ssl_ca = {setup['ca_file']}"]
        lines += [
            f"set fifo_name = {self.fifo}",
            f"set events_command = {hook}",
            "set event_log_files = 0",
            f"set tracelog_file = {self.trace}",
            "set tracelog_level = 2",
            "set logging = 0",
            "module load fifo",
        ]
        rc = os.path.join(self.dir, "mcabberrc")
        with open(rc, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(rc, 0o600)
        self.proc = spawn_on_pty(["mcabber", "-f", rc], dict(os.environ, HOME=self.dir, TERM="xterm"))
        self.trace_pos = 0
        self.events_pos = 0

    def _new(self, path, attr):
        """Lines appended to a file since the last look."""
        try:
            with open(path, errors="replace") as f:
                f.seek(getattr(self, attr))
                text = f.read()
                setattr(self, attr, f.tell())
        except FileNotFoundError:
            return []
        return text.splitlines()

    def pump(self):
        """Pass mcabber's trace to stderr and its events to sixpac; the new trace lines."""
        lines = self._new(self.trace, "trace_pos")
        for l in lines:
            print(l, file=sys.stderr, flush=True)
        for e in self._new(self.events, "events_pos"):
            words = e.split()
            name = {"MSG": "message", "STATUS": "presence"}.get(words[0] if words else "", (words[0] if words else "").lower())
            event(name, e)
        return lines

    def wait_trace(self, needle, within=STEP):
        until = time.time() + within
        while time.time() < until:
            for l in self.pump():
                if needle in l:
                    return l
            if self.proc.poll() is not None:
                raise Failed("error", f"mcabber exited ({self.proc.returncode})")
            time.sleep(0.02)
        return None

    def command(self, text):
        until = time.time() + STEP
        while not os.path.exists(self.fifo):
            if time.time() > until or self.proc.poll() is not None:
                raise Failed("error", "mcabber's FIFO never appeared")
            time.sleep(0.02)
        with open(self.fifo, "w") as f:
            f.write(text + "\n")
        if not self.wait_trace("Executing FIFO command: " + text.split("\n")[0][:40]):
            raise Failed("error", f"mcabber did not take `{text}`")

    def stop(self):
        quit_or_kill(self.proc, lambda: self.command("/quit"))
        self.pump()
        shutil.rmtree(self.dir, ignore_errors=True)


class Driver(OneClient):
    """One actor's mcabber, started at its connect."""

    def perform(self, setup, intent):
        action = intent["action"]
        if action == "connect":
            if setup["kind"] != "xmpp":
                raise Failed("inconclusive", f"mcabber is XMPP-only; actor {setup['actor']} is {setup['kind']}")
            if self.client is None:
                self.client = Mcabber(setup)
                if not self.client.wait_trace("Connection established."):
                    raise Failed("fail", "mcabber did not log in within the deadline")
                # Initial presence goes out right after the roster.
                self.client.wait_trace("Your status has been set", within=2)
            return
        client = self.running(action)
        if action == "disconnect":
            self.stop()
            return
        jid = intent.get("to", {}).get("jid") if isinstance(intent.get("to"), dict) else None
        if action == "chat":
            client.command(f"/say_to -q {jid} {intent['text']}")
        elif action == "set-presence":
            client.command(f"/status {SHOW.get(intent['show'], 'online')} {intent['status']}".rstrip())
        elif action == "add-contact":
            client.command(f"/add {jid}")
        elif action in ("approve-contact", "pre-approve-contact"):
            # `allow` sends `subscribed` whether or not the contact asked (RFC 6121 §3.4).
            client.command(f"/authorization allow {jid}")
        elif action == "deny-contact":
            client.command(f"/authorization cancel {jid}")
        elif action == "cancel-subscription":
            client.command(f"/authorization request_unsubscribe {jid}")
        else:
            raise Failed("inconclusive", f"mcabber driver cannot {action}")
        client.pump()



if __name__ == "__main__":
    d = Driver()
    serve("mcabber", version(), CAN, d.perform, d.stop)
