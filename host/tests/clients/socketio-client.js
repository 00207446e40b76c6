// The official socket.io-client 4.x (installed by `cargo xtask test` into
// target/clients): connect with the WebSocket transport, wait for COUNT
// `clock` and COUNT `value` events (at most 60 s), disconnect, print a JSON
// summary (in_order: the clocks never went back). Usage: node socketio-client.js URL COUNT
const { io } = require("socket.io-client");
const [url, count] = [process.argv[2], Number(process.argv[3] || 50)];
const socket = io(url, { transports: ["websocket"], reconnection: false, timeout: 5000 });
const counts = { connected: false, clock: 0, value: 0, in_order: true, lastClock: null };
const finish = (code) => {
  socket.disconnect();
  console.log(JSON.stringify(counts));
  process.exit(code);
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
