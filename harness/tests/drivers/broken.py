#!/usr/bin/env python3
"""A driver that breaks in the way its first argument names, for the tests of sixpac's driver
handling: `exits` (exits at the first command), `hangs` (never answers it, and ignores
SIGTERM), `garbage` (answers with a line that is not JSON)."""
import json, signal, sys, time

how = sys.argv[1]
hello = json.loads(sys.stdin.readline())
print(json.dumps({"type": "hello", "protocol": hello["protocol"], "name": f"broken-{how}", "version": "0", "can": ["connect", "disconnect", "register"]}), flush=True)
sys.stdin.readline()
print(f"broken-{how}: got the first command", file=sys.stderr, flush=True)
if how == "exits":
    sys.exit(7)
if how == "hangs":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
print("this is not the driver protocol", flush=True)
time.sleep(60)
