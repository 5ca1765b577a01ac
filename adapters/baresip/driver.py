#!/usr/bin/env python3
"""sixpac driver for baresip (Debian's baresip-core), over its ctrl_tcp module.

Speaks sixpac's driver protocol (docs/driver-protocol.md) on stdin/stdout and plays one SIP
actor with one baresip process: register, MESSAGE out, call, answer, reject, cancel, hang up.
ctrl_tcp carries JSON netstrings both ways on one connection: commands with a token, their
responses, and the events baresip pushes (REGISTER_OK, CALL_INCOMING, CALL_RINGING,
CALL_ESTABLISHED, CALL_CLOSED). baresip 1.0 reports no incoming MESSAGE, so a `receives` of
one is judged on the wire alone, as every `receives` is.

Everything baresip does stays on loopback: it binds 127.0.0.1 (`net_interface`, `sip_listen`),
its only proxy is the tap (`outbound`), its DNS server is 127.0.0.1, and no STUN, TURN, UPnP or
ICE module is loaded. The driver's stderr is the client's log (baresip's own output included).
"""
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import wave

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from driverlib import Failed, OneClient, event, quit_or_kill, serve  # noqa: E402

CAN = ["connect", "disconnect", "register", "unregister", "message", "call", "answer", "reject", "cancel", "hang-up"]
STEP = 10.0



def free_ports():
    """A control port (TCP) and a SIP port free for both TCP and UDP, distinct: all held
    open together while chosen, so the two cannot be the same number."""
    while True:
        ctrl, sip, sip_udp = socket.socket(), socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ctrl.bind(("127.0.0.1", 0))
            sip.bind(("127.0.0.1", 0))
            sip_udp.bind(("127.0.0.1", sip.getsockname()[1]))
            return ctrl.getsockname()[1], sip.getsockname()[1]
        except OSError:
            continue  # that SIP port is taken for UDP: pick again
        finally:
            for s in (ctrl, sip, sip_udp):
                s.close()


def version():
    out = subprocess.run(["baresip", "-h"], capture_output=True, text=True, timeout=5)
    first = (out.stdout + out.stderr).split()
    return next((w[1:] for w in first if w.startswith("v") and w[1:2].isdigit()), "unknown")



class Baresip:
    """One baresip process for one account, and its ctrl_tcp connection."""

    def __init__(self, setup):
        self.setup = setup
        self.dir = tempfile.mkdtemp(prefix=f"sixpac-{os.getpid()}-baresip-")
        self.events = []
        self.token = 0
        self.buf = b""
        acc = setup["account"]
        transport = setup["sip_transport"]
        tap = setup["taps"]["sip_" + transport] if transport != "tls" else None
        if not tap:
            raise Failed("inconclusive", f"baresip driver: no tap for SIP over {transport}")
        ctrl, sip = free_ports()
        wav = os.path.join(self.dir, "silence-8k.wav")
        with wave.open(wav, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\0\0" * 8000 * 120)  # baresip hangs up when its source ends
        # baresip's config: loopback only, one audio codec pair, no NAT helpers.
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write(
                f"sip_listen 127.0.0.1:{sip}\n"
                "net_interface 127.0.0.1\n"
                "dns_server 127.0.0.1:53\n"
                f"audio_source aufile,{wav}\n"
                "audio_player aufile,/dev/null\n"
                "module_path /usr/lib/baresip/modules\n"
                "module g711.so\nmodule aufile.so\nmodule account.so\nmodule contact.so\nmodule menu.so\nmodule ctrl_tcp.so\n"
                f"ctrl_tcp_listen 127.0.0.1:{ctrl}\n"
            )
        param = "" if transport == "udp" else f";transport={transport}"
        # The account is added once the control connection is up (`uanew`), so that its
        # REGISTER_OK reaches the driver; baresip starts with none.
        self.account = (
            f"<sip:{acc['user']}@{acc['domain']}>;auth_pass={acc['password']};"
            f"outbound=\"sip:{tap}{param}\";answermode=manual;regint=3600"
        )
        open(os.path.join(self.dir, "accounts"), "w").close()
        open(os.path.join(self.dir, "contacts"), "w").close()
        self.proc = subprocess.Popen(["baresip", "-f", self.dir], stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr)
        deadline = time.time() + STEP
        while True:
            try:
                self.ctrl = socket.create_connection(("127.0.0.1", ctrl), timeout=1)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise Failed("error", f"baresip did not open its control port (exit {self.proc.poll()})")
                time.sleep(0.05)

    def _read(self, until):
        """One netstring from ctrl_tcp, or None when `until` passed."""
        while True:
            if b":" in self.buf:
                n, rest = self.buf.split(b":", 1)
                n = int(n)
                if len(rest) >= n + 1:
                    self.buf = rest[n + 1:]
                    return json.loads(rest[:n])
            left = until - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self.ctrl], [], [], left)
            if r:
                chunk = self.ctrl.recv(65536)
                if not chunk:
                    raise Failed("error", f"baresip closed its control connection (exit {self.proc.poll()})")
                self.buf += chunk

    def _event(self, msg):
        self.events.append(msg)
        event(msg.get("type", "").lower().replace("_", "-"), msg.get("param") or msg.get("peeruri"), **msg)

    def command(self, name, params=""):
        self.token += 1
        tok = str(self.token)
        body = json.dumps({"command": name, "params": params, "token": tok}).encode()
        self.ctrl.sendall(str(len(body)).encode() + b":" + body + b",")
        until = time.time() + STEP
        while True:
            msg = self._read(until)
            if msg is None:
                raise Failed("error", f"baresip did not answer `{name}`")
            if msg.get("event"):
                self._event(msg)
            elif msg.get("token") == tok:
                if not msg.get("ok", True):
                    raise Failed("error", f"baresip refused `{name} {params}`: {msg.get('data')}")
                return msg.get("data", "")

    def wait_event(self, types, within=STEP, since=0):
        """The first event of one of `types` (already seen since index `since`, or new)."""
        for m in self.events[since:]:
            if m.get("type") in types:
                return m
        until = time.time() + within
        while True:
            msg = self._read(until)
            if msg is None:
                return None
            if msg.get("event"):
                self._event(msg)
                if msg.get("type") in types:
                    return msg

    def registered(self):
        """Add the account and wait for its registration."""
        self.command("uanew", self.account)
        m = self.wait_event({"REGISTER_OK", "REGISTER_FAIL"})
        if m is None:
            raise Failed("fail", "no registration within the deadline")
        if m.get("type") == "REGISTER_FAIL":
            raise Failed("fail", f"registration failed: {m.get('param')}")

    def drain(self):
        while self._read(time.time()) is not None:
            pass

    def stop(self):
        quit_or_kill(self.proc, lambda: self.command("quit"))
        shutil.rmtree(self.dir, ignore_errors=True)


class Driver(OneClient):
    """One actor's baresip, started at its first connect or register."""

    def perform(self, setup, intent):
        action = intent["action"]
        if setup["kind"] != "sip" and action in ("connect", "disconnect"):
            raise Failed("inconclusive", f"baresip is SIP-only; actor {setup['actor']} is {setup['kind']}")
        if action in ("connect", "register"):
            if self.client is None:
                self.client = Baresip(setup)
                self.client.registered()
            return
        client = self.running(action)
        if action in ("disconnect", "unregister"):
            self.stop()
        elif action == "message":
            # baresip 1.0 messages its current contact: make the peer the only one.
            with open(os.path.join(client.dir, "contacts"), "w") as f:
                f.write(f"\"{intent['to']['name']}\" <{intent['to']['sip']}>\n")
            client.command("rmmod", "contact")
            client.command("insmod", "contact")
            client.command("message", intent["text"])
        elif action == "call":
            if intent["video"]:
                raise Failed("inconclusive", "the baresip driver configures no video source, so it cannot offer video")
            client.command("dial", intent["to"]["sip"])
        elif action in ("answer", "reject"):
            if not client.wait_event({"CALL_INCOMING"}):
                raise Failed("fail", "no incoming call within the deadline")
            if action == "answer":
                client.command("accept")
                if not client.wait_event({"CALL_ESTABLISHED"}, since=len(client.events) - 1):
                    raise Failed("fail", "the call was not established")
            elif intent["code"] != 486:
                # baresip 1.0 rejects an incoming call with 486 only.
                raise Failed("inconclusive", f"baresip 1.0 rejects only with 486, not {intent['code']}")
            else:
                client.command("hangup")
        elif action in ("cancel", "hang-up"):
            mark = len(client.events)
            client.command("hangup")
            if not client.wait_event({"CALL_CLOSED"}, since=mark):
                raise Failed("fail", "the call did not end")
        else:
            raise Failed("inconclusive", f"baresip driver cannot {action}")
        if self.client is not None:
            self.client.drain()



if __name__ == "__main__":
    d = Driver()
    serve("baresip", version(), CAN, d.perform, d.stop)
