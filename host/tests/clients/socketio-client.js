// The official socket.io-client 4.x (installed by `cargo xtask test` into
// target/clients): connect with the WebSocket transport, count events for
// HOLD ms, disconnect, print a JSON summary. Usage: node socketio-client.js URL HOLD_MS
const { io } = require("socket.io-client");
const [url, hold] = [process.argv[2], Number(process.argv[3] || 1500)];
const socket = io(url, { transports: ["websocket"], reconnection: false, timeout: 5000 });
const counts = { connected: false, clock: 0, value: 0, lastClock: null };
socket.on("connect", () => {
  counts.connected = true;
  setTimeout(() => {
    socket.disconnect();
    console.log(JSON.stringify(counts));
    process.exit(0);
  }, hold);
});
socket.on("clock", (ms) => { counts.clock++; counts.lastClock = ms; });
socket.on("value", () => { counts.value++; });
socket.on("connect_error", (e) => {
  console.log(JSON.stringify({ error: String(e) }));
  process.exit(1);
});
