"""The python-socketio client (installed by `cargo xtask test` into
target/clients/python): connect with the WebSocket transport, count events for
HOLD seconds, disconnect, print a JSON summary. Usage: socketio_client.py URL HOLD_S"""
import json
import sys
import time

import socketio

url, hold = sys.argv[1], float(sys.argv[2] if len(sys.argv) > 2 else 1.5)
sio = socketio.Client(reconnection=False)
counts = {"connected": False, "clock": 0, "value": 0}


@sio.on("clock")
def on_clock(ms):
    counts["clock"] += 1


@sio.on("value")
def on_value(value):
    counts["value"] += 1


sio.connect(url, transports=["websocket"], wait_timeout=5)
counts["connected"] = sio.connected
time.sleep(hold)
sio.disconnect()
print(json.dumps(counts))
