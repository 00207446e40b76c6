"""The python-socketio client (installed by `cargo xtask test` into
target/clients/python): connect, wait for COUNT `clock` and COUNT `value`
events (at most 60 s), disconnect, print a JSON summary (in_order: the clocks
never went back; transport: the one in use at the end).
Usage: socketio_client.py URL COUNT [TRANSPORTS]
TRANSPORTS: "default" (the client's defaults: long-polling, then the upgrade
to a WebSocket), "websocket" or "polling" (that one only)."""
import json
import sys
import threading

import socketio

url, count = sys.argv[1], int(sys.argv[2] if len(sys.argv) > 2 else 50)
mode = sys.argv[3] if len(sys.argv) > 3 else "default"
sio = socketio.Client(reconnection=False)
counts = {"connected": False, "clock": 0, "value": 0, "in_order": True, "last_clock": None, "transport": None}
done = threading.Event()


def check():
    if counts["clock"] >= count and counts["value"] >= count:
        done.set()


@sio.on("clock")
def on_clock(ms):
    if counts["last_clock"] is not None and ms < counts["last_clock"]:
        counts["in_order"] = False
    counts["clock"] += 1
    counts["last_clock"] = ms
    check()


@sio.on("value")
def on_value(value):
    counts["value"] += 1
    check()


if mode == "default":
    sio.connect(url, wait_timeout=5)
else:
    sio.connect(url, transports=[mode], wait_timeout=5)
counts["connected"] = sio.connected
finished = done.wait(60)
counts["transport"] = sio.transport()
sio.disconnect()
print(json.dumps(counts))
sys.exit(0 if finished else 1)
