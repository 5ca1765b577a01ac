#!/usr/bin/env python3
"""A driver whose client "logs in" by telling its user its legs differ in protection (RFC 7081
§7): `tells.py report` lists told-user in its can list, `tells.py mute` does not. It sends
nothing on the wire; the tests use it to check how sixpac judges told-user events."""
import json, sys

report = sys.argv[1] == "report"
hello = json.loads(sys.stdin.readline())
can = ["connect", "disconnect"] + (["told-user"] if report else [])
print(json.dumps({"type": "hello", "protocol": hello["protocol"], "name": "tells", "version": sys.argv[1], "can": can}), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    if msg["type"] == "bye":
        break
    if msg["intent"]["action"] == "connect":
        print(json.dumps({"type": "event", "event": "told-user", "about": "protection", "text": "XMPP is encrypted, SIP is not"}), flush=True)
    print(json.dumps({"type": "done", "id": msg["id"]}), flush=True)
