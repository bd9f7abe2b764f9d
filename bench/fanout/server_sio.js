// socket.io comparison server for bench/fanout/run.py (not part of the product).
//   node server_sio.js PORT
// stdin commands (one per line): "fire" -> io.emit("message", MESSAGE) to every
// connected socket, answers "fired <ms spent in emit>"; "gc" -> answers "ok <sockets>".
// Prints "ready" once listening. WebSocket transport only, no long-polling.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const readline = require("readline");

const port = Number(process.argv[2]);
const message = JSON.parse(process.env.FANOUT_MESSAGE);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
  cors: { origin: "*" },
});
io.on("connection", (socket) => {
  socket.on("ping_app", () => socket.emit("pong_app"));
});
httpServer.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => console.log("ready"));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = line.trim();
  if (cmd === "fire") {
    const t0 = process.hrtime.bigint();
    io.emit("message", message);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`fired ${ms.toFixed(3)}`);
  } else if (cmd === "gc") {
    if (global.gc) global.gc();
    console.log(`ok ${io.engine.clientsCount}`);
  } else if (cmd === "quit") {
    process.exit(0);
  }
});
process.stdin.on("end", () => process.exit(0));
