// The official socket.io-client 4.x (installed by `cargo xtask test` into
// target/clients): connect, wait for COUNT `clock` and COUNT `value` events
// (at most 60 s), disconnect, print a JSON summary (in_order: the clocks
// never went back; transport: the one in use at the end).
// Usage: node socketio-client.js URL COUNT [TRANSPORTS]
// TRANSPORTS: "default" (the client's defaults: long-polling, then the
// upgrade to a WebSocket), "websocket" or "polling" (that one only).
const { io } = require("socket.io-client");
const [url, count, mode] = [process.argv[2], Number(process.argv[3] || 50), process.argv[4] || "default"];
const options = { reconnection: false, timeout: 5000 };
if (mode !== "default") options.transports = [mode];
const socket = io(url, options);
const counts = { connected: false, clock: 0, value: 0, in_order: true, lastClock: null, transport: null };
let finished = false;
const finish = (code) => {
  if (finished) return;
  finished = true;
  counts.transport = socket.io.engine ? socket.io.engine.transport.name : null;
  socket.disconnect();
  console.log(JSON.stringify(counts));
  // A long-polling client's disconnect is a POST still on its way.
  setTimeout(() => process.exit(code), 500);
};
const giveUp = setTimeout(() => finish(1), 60000);
const check = () => {
  if (counts.clock >= count && counts.value >= count) {
    clearTimeout(giveUp);
    finish(0);
  }
};
socket.on("connect", () => { counts.connected = true; });
socket.on("clock", (ms) => {
  if (counts.lastClock !== null && ms < counts.lastClock) counts.in_order = false;
  counts.clock++;
  counts.lastClock = ms;
  check();
});
socket.on("value", () => { counts.value++; check(); });
socket.on("connect_error", (e) => {
  console.log(JSON.stringify({ error: String(e) }));
  process.exit(1);
});
