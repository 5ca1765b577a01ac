#!/usr/bin/python3
"""sixpac driver for finch (libpurple 2.14), the one dual-stack client in Debian: XMPP
(prpl-jabber) and SIP through SIMPLE (prpl-simple: REGISTER, MESSAGE, PUBLISH; no calls).

finch runs on a pseudo-terminal of its own, with a HOME and a D-Bus session bus of its own;
the driver talks to libpurple over that bus (im.pidgin.purple.PurpleService, python3-dbus,
hence Debian's /usr/bin/python3). libpurple checks a server certificate against the host it
connects to and ignores CAs in its folder, so the driver pins the certificate the XMPP tap
presents (fetched with openssl through the tap) for 127.0.0.1. UPnP, NAT-PMP and STUN are off.

SIMPLE binds 0.0.0.0:5060, and two instances in one network steal each other's responses:
run finch only under `sixpac run --isolate` (a network namespace holding only loopback), one
finch-played actor per run.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import dbus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from driverlib import Failed, OneClient, event, quit_or_kill, serve, spawn_on_pty  # noqa: E402

CAN = ["connect", "disconnect", "register", "unregister", "chat", "message", "set-presence", "add-contact"]
STEP = 10.0
SERVICE, PATH, IFACE = "im.pidgin.purple.PurpleService", "/im/pidgin/purple/PurpleObject", "im.pidgin.purple.PurpleInterface"
# sixpac's show values -> libpurple's status primitives.
PRIMITIVE = {"available": 2, "away": 5, "chat": 2, "dnd": 3, "xa": 6}




def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


def tap_certificate(tap, domain):
    """The certificate the XMPP tap presents after STARTTLS, PEM."""
    out = subprocess.run(["openssl", "s_client", "-starttls", "xmpp", "-xmpphost", domain, "-connect", tap, "-servername", domain],
                         input="", capture_output=True, text=True, timeout=STEP)
    text = out.stdout
    start, end = text.find("-----BEGIN CERTIFICATE-----"), text.find("-----END CERTIFICATE-----")
    if start < 0 or end < 0:
        raise Failed("error", f"could not read the tap's certificate: {out.stderr.strip()[-200:]}")
    return text[start:end + len("-----END CERTIFICATE-----")] + "\n"


class Finch:
    def __init__(self, setup):
        acc, taps, kind = setup["account"], setup["taps"], setup["kind"]
        self.kind = kind
        self.home = tempfile.mkdtemp(prefix=f"sixpac-{os.getpid()}-finch-")
        purple = os.path.join(self.home, ".purple")
        os.makedirs(os.path.join(purple, "certificates", "x509", "tls_peers"))
        user, domain, pw = acc["user"], acc["domain"], xml_escape(acc["password"])
        accounts = []
        self.jid = f"{user}@{domain}/finch"
        self.aor = f"{user}@{domain}"
        if kind in ("dual", "xmpp"):
            host, port = taps["xmpp"].rsplit(":", 1)
            security = "require_tls" if setup["xmpp_tls"] else "opportunistic_tls"
            with open(os.path.join(purple, "certificates", "x509", "tls_peers", host), "w") as f:
                f.write(tap_certificate(taps["xmpp"], domain))
            accounts.append(f"""<account><protocol>prpl-jabber</protocol><name>{self.jid}</name><password>{pw}</password>
<settings><setting name='connect_server' type='string'>{host}</setting><setting name='port' type='int'>{port}</setting>
<setting name='connection_security' type='string'>{security}</setting><setting name='auth_plain_in_clear' type='bool'>1</setting></settings>
<settings ui='gnt-purple'><setting name='auto-login' type='bool'>1</setting></settings></account>""")
        if kind in ("dual", "sip"):
            if setup["sip_transport"] != "udp":
                raise Failed("inconclusive", f"the finch driver runs SIMPLE over UDP only, not {setup['sip_transport']}")
            host, port = taps["sip_udp"].rsplit(":", 1)
            accounts.append(f"""<account><protocol>prpl-simple</protocol><name>{self.aor}</name><password>{pw}</password>
<settings><setting name='useproxy' type='bool'>1</setting><setting name='proxy' type='string'>{host}</setting>
<setting name='port' type='int'>{port}</setting><setting name='udp' type='bool'>1</setting><setting name='dopublish' type='bool'>1</setting></settings>
<settings ui='gnt-purple'><setting name='auto-login' type='bool'>1</setting></settings></account>""")
        with open(os.path.join(purple, "accounts.xml"), "w") as f:
            f.write("<?xml version='1.0' encoding='UTF-8' ?>\n<account version='1.0'>\n" + "\n".join(accounts) + "\n</account>\n")
        with open(os.path.join(purple, "prefs.xml"), "w") as f:
            f.write("""<?xml version='1.0' encoding='UTF-8' ?>
<pref version='1' name='/'><pref name='purple'><pref name='network'>
<pref name='map_ports' type='bool' value='0'/><pref name='auto_ip' type='bool' value='0'/>
<pref name='stun_server' type='string' value=''/><pref name='turn_server' type='string' value=''/>
</pref></pref></pref>
""")
        bus = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1", "--nopidfile"],
                             capture_output=True, text=True, timeout=STEP)
        lines = bus.stdout.split()
        if bus.returncode != 0 or len(lines) < 2:
            raise Failed("error", f"dbus-daemon did not start: {bus.stderr.strip()}")
        self.bus_address, self.bus_pid = lines[0], int(lines[1])
        env = dict(os.environ, HOME=self.home, TERM="xterm", DBUS_SESSION_BUS_ADDRESS=self.bus_address)
        self.proc = spawn_on_pty(["finch", "-d"], env, stderr=subprocess.PIPE)
        threading.Thread(target=self._log, daemon=True).start()
        self.purple = None
        until = time.time() + STEP
        while self.purple is None:
            try:
                conn = dbus.bus.BusConnection(self.bus_address)
                self.purple = dbus.Interface(conn.get_object(SERVICE, PATH), IFACE)
                self.purple.PurpleAccountsGetAll()
            except dbus.exceptions.DBusException:
                self.purple = None
                if time.time() > until or self.proc.poll() is not None:
                    raise Failed("error", f"finch did not offer its D-Bus service (exit {self.proc.poll()})")
                time.sleep(0.1)

    def _log(self):
        for line in self.proc.stderr:
            sys.stderr.write(line.decode(errors="replace"))
        sys.stderr.flush()

    def account(self, protocol):
        name = self.jid if protocol == "prpl-jabber" else self.aor
        a = self.purple.PurpleAccountsFind(name, protocol)
        if not a:
            raise Failed("inconclusive", f"actor has no {protocol} account")
        return a

    def wait_connected(self):
        wanted = [p for p, k in (("prpl-jabber", ("dual", "xmpp")), ("prpl-simple", ("dual", "sip"))) if self.kind in k]
        until = time.time() + STEP
        for p in wanted:
            a = self.account(p)
            while not self.purple.PurpleAccountIsConnected(a):
                if time.time() > until:
                    raise Failed("fail", f"finch's {p} account did not connect within the deadline")
                time.sleep(0.05)
            event("logged-in" if p == "prpl-jabber" else "registered", p)

    def im(self, protocol, who, text):
        a = self.account(protocol)
        conv = self.purple.PurpleConversationNew(1, a, who)
        self.purple.PurpleConvImSend(self.purple.PurpleConvIm(conv), text)

    def add_buddy(self, jid):
        """Put the contact on the roster and ask for its presence (libpurple subscribes)."""
        a = self.account("prpl-jabber")
        buddy = self.purple.PurpleBuddyNew(a, jid, "")
        self.purple.PurpleBlistAddBuddy(buddy, 0, 0, 0)
        self.purple.PurpleAccountAddBuddy(a, buddy)

    def presence(self, show, status):
        s = self.purple.PurpleSavedstatusNew("", PRIMITIVE.get(show, 2))
        self.purple.PurpleSavedstatusSetMessage(s, status)
        self.purple.PurpleSavedstatusActivate(s)

    def stop(self):
        quit_or_kill(self.proc, self.purple.PurpleCoreQuit)
        try:
            os.kill(self.bus_pid, 15)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.home, ignore_errors=True)


class Driver(OneClient):
    """One actor's finch, started at its connect (or register, for a SIP-only actor)."""

    def perform(self, setup, intent):
        action = intent["action"]
        if action in ("connect", "register"):
            if action == "register" and setup["kind"] != "sip":
                raise Failed("inconclusive", "finch registers its SIMPLE account only together with its XMPP one")
            if self.client is not None and action == "register":
                raise Failed("inconclusive", "finch cannot be told to refresh its registration (libpurple refreshes on its own timer)")
            if self.client is None:
                self.client = Finch(setup)
            self.client.wait_connected()
            return
        client = self.running(action)
        if action in ("disconnect", "unregister"):
            self.stop()
        elif action == "chat" and intent["to"]["kind"] == "sip":
            client.im("prpl-simple", intent["to"]["sip"], intent["text"])
        elif action == "chat":
            client.im("prpl-jabber", intent["to"]["jid"], intent["text"])
        elif action == "message":
            client.im("prpl-simple", intent["to"]["sip"], intent["text"])
        elif action == "set-presence":
            client.presence(intent["show"], intent["status"])
        elif action == "add-contact":
            client.add_buddy(intent["to"]["jid"])
        else:
            raise Failed("inconclusive", f"finch driver cannot {action}")



if __name__ == "__main__":
    version = subprocess.run(["finch", "--version"], capture_output=True, text=True, timeout=5).stdout.split()
    d = Driver()
    serve("finch", version[1] if len(version) > 1 else "unknown", CAN, d.perform, d.stop)
