"""The python-socketio client (installed by `cargo xtask test` into
target/clients/python): connect with the WebSocket transport, wait for COUNT
`clock` and COUNT `value` events (at most 60 s), disconnect, print a JSON
summary (in_order: the clocks never went back). Usage: socketio_client.py URL COUNT"""
import json
import sys
import threading

import socketio

url, count = sys.argv[1], int(sys.argv[2] if len(sys.argv) > 2 else 50)
sio = socketio.Client(reconnection=False)
counts = {"connected": False, "clock": 0, "value": 0, "in_order": True, "last_clock": None}
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


sio.connect(url, transports=["websocket"], wait_timeout=5)
counts["connected"] = sio.connected
finished = done.wait(60)
sio.disconnect()
print(json.dumps(counts))
sys.exit(0 if finished else 1)
