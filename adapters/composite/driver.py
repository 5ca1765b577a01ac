#!/usr/bin/env python3
"""A dual-stack client made of two single-stack clients: one driver for the SIP leg, one for
the XMPP leg (`driver.py SIP-DRIVER XMPP-DRIVER`, each an argv path run in its own folder).

It speaks sixpac's driver protocol (docs/driver-protocol.md) upwards and downwards. It logs in
SIP first, then XMPP (RFC 7081 §2 order), sends each action to the leg it belongs to, and takes
the decisions a dual-stack client takes the plainest way a pair of unrelated clients can: a
chat goes over XMPP (over SIP MESSAGE to a SIP-only peer), a call goes to the peer's SIP
address-of-record. It knows nothing of vCards, reachability addresses or Call-Info, so the
CUSAX scenarios show what such a client misses, on the wire.
"""
import json
import os
import queue
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from driverlib import Failed, quit_or_kill, read_hello, send, serve  # noqa: E402

SIP_ACTIONS = {"register", "unregister", "message", "call", "answer", "reject", "cancel", "hang-up",
               "publish-presence", "refresh-presence", "withdraw-presence", "subscribe", "unsubscribe"}
XMPP_ACTIONS = {"set-presence", "add-contact", "approve-contact", "deny-contact", "pre-approve-contact",
                "cancel-subscription", "verify-caps"}
WAIT = 20.0


class Leg:
    """One sub-driver: its process, its lines, its hello."""

    def __init__(self, argv, leg):
        path = os.path.abspath(argv)
        self.leg = leg
        self.proc = subprocess.Popen([path], cwd=os.path.dirname(path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=sys.stderr, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self):
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(line)
        self.lines.put(None)

    def write(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def read(self):
        """The next message that is not an event; events are passed up on the way."""
        while True:
            line = self.lines.get(timeout=WAIT)
            if line is None:
                raise RuntimeError(f"the {self.leg} driver exited ({self.proc.poll()})")
            msg = json.loads(line)
            if msg.get("type") == "event":
                msg.setdefault("details", {})["leg"] = self.leg
                send(msg)
                continue
            return msg

    def hello(self, protocol, actor):
        self.write({"type": "hello", "protocol": protocol, "actor": actor})
        h = self.read()
        self.name, self.version, self.can = h["name"], h["version"], set(h["can"])

    def do(self, setup, intent, kind):
        """Run one intent on this leg, as an actor of `kind`; the answer (done or failed)."""
        if intent["action"] not in self.can:
            return {"type": "failed", "verdict": "inconclusive", "reason": f"{self.name} ({self.leg} leg) cannot {intent['action']}"}
        self.next_id += 1
        self.write({"type": "command", "id": self.next_id, "setup": dict(setup, kind=kind), "intent": intent})
        return self.read()

    def stop(self):
        def bye():
            self.write({"type": "bye"})
            self.proc.stdin.close()

        quit_or_kill(self.proc, bye, within=5)


class Driver:
    """Each intent to the leg it belongs to; login SIP first, logout XMPP first."""

    def __init__(self, sip, xmpp):
        self.sip, self.xmpp = sip, xmpp

    def perform(self, setup, intent):
        action, sip, xmpp = intent["action"], self.sip, self.xmpp
        if action == "connect":
            steps = [(sip, intent, "sip"), (xmpp, intent, "xmpp")]
        elif action == "disconnect":
            steps = [(xmpp, intent, "xmpp"), (sip, intent, "sip")]
        elif action == "chat" and intent["to"]["kind"] == "sip":
            steps = [(sip, {"action": "message", "to": intent["to"], "text": intent["text"]}, "sip")]
        elif action == "chat":
            steps = [(xmpp, intent, "xmpp")]
        elif action in SIP_ACTIONS:
            steps = [(sip, intent, "sip")]
        elif action in XMPP_ACTIONS:
            steps = [(xmpp, intent, "xmpp")]
        else:
            raise Failed("inconclusive", f"the composite client cannot {action}")
        for leg, i, kind in steps:
            answer = leg.do(setup, i, kind)
            if answer.get("type") != "done":
                raise Failed(answer.get("verdict", "error"), answer.get("reason", json.dumps(answer)))

    def stop(self):
        for leg in (self.xmpp, self.sip):
            leg.stop()


if __name__ == "__main__":
    sip, xmpp = Leg(sys.argv[1], "sip"), Leg(sys.argv[2], "xmpp")
    # The legs are greeted first, to learn their names and what they can do.
    hello = read_hello()
    for leg in (sip, xmpp):
        leg.hello(hello["protocol"], hello["actor"])
    can = sorted((sip.can & SIP_ACTIONS) | (xmpp.can & XMPP_ACTIONS) | {"connect", "disconnect", "chat"})
    d = Driver(sip, xmpp)
    serve(f"{sip.name}+{xmpp.name}", f"{sip.version}+{xmpp.version}", can, d.perform, d.stop, hello=hello)
