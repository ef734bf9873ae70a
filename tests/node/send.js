// Sends records to a Forward server with the real @fluent-org/logger client.
// usage: node send.js CONFIG_JSON < events.json
//   CONFIG_JSON: {"port": 24224,
//                 "mode": "default" | "Message" | "Forward" | "PackedForward"
//                         | "CompressedPackedForward",
//                 "ack": true | false,            // ack option: emit resolves on {"ack": chunk}
//                 "time": "eventtime" | "int" | "millis",
//                 "security": null | {clientHostname, sharedKey, username?, password?},
//                 "waitMs": 10000}                // give up (shutdown) after this long
//   events.json: [[unix_milliseconds, {record}], ...]
// time: "eventtime" emits EventTime.fromTimestamp(ms) (fixext8 with nanoseconds);
//       "int" emits the number (the client sends floor(ms / 1000), an integer);
//       "millis" emits the number with the client's `milliseconds: true` option
//       (the client converts it to an EventTime itself).
// Prints one JSON line: {"resolved": n, "rejected": n, "rejections": [distinct
// "Name: message"], "socketErrors": [...]}; exits 0 once every emit has settled (or
// was rejected by the shutdown after a fatal socket error / waitMs), 1 on a crash,
// 2 if the event loop emptied with a client promise still pending (it would exit 0).
"use strict";
const { FluentClient, EventTime } = require("@fluent-org/logger");

// Socket errors after which the client never reconnects: waiting longer is pointless.
const FATAL = new Set(["AuthError", "SharedKeyMismatchError", "ConfigError",
                       "UnexpectedMessageError", "FatalSocketError"]);

const describe = (err) => `${(err && err.name) || "Error"}: ${(err && err.message) || err}`;

let finished = false;
process.on("exit", (code) => {
  if (!finished && code === 0) { // the loop emptied while a client promise was pending
    console.error("send.js: event loop emptied before it finished (a promise never settled)");
    process.exitCode = 2;
  }
});

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const events = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const options = { socket: { host: "127.0.0.1", port: cfg.port, timeout: 5000 } };
  if (cfg.mode !== "default") options.eventMode = cfg.mode;
  if (cfg.ack) options.ack = { ackTimeout: 5000 };
  if (cfg.time === "millis") options.milliseconds = true;
  if (cfg.security) options.security = cfg.security;
  const client = new FluentClient("node", options);

  const socketErrors = [];
  let fatalError = false;
  let onFatal;
  const fatal = new Promise((resolve) => { onFatal = resolve; });
  client.socketOn("error", (err) => {
    socketErrors.push(describe(err));
    if (FATAL.has(err && err.name)) fatalError = true;
  });
  // Wait for the socket's "close" after a fatal error before shutdown(): called in
  // between (the net.Socket destroyed, its "close" not yet emitted), the client's
  // FluentSocket.disconnect() does socket.end(cb) on the destroyed socket, cb never
  // runs and shutdown() never settles (@fluent-org/logger 1.0.10).
  client.socketOn("close", () => { if (fatalError) onFatal(); });

  const stamp = (ms) => (cfg.time === "eventtime" ? EventTime.fromTimestamp(ms) : ms);
  const sent = events.map(([ms, record]) => client.emit("hdfs", record, stamp(ms)));
  const settled = Promise.allSettled(sent);
  let timer;
  const deadline = new Promise((resolve) => { timer = setTimeout(resolve, cfg.waitMs || 10000); });
  await Promise.race([settled, fatal, deadline]);
  clearTimeout(timer);
  await client.shutdown().catch((err) => socketErrors.push(describe(err)));
  const results = await settled; // shutdown rejected whatever was still queued
  const rejections = [...new Set(results.filter((r) => r.status === "rejected")
                                        .map((r) => describe(r.reason)))];
  console.log(JSON.stringify({
    resolved: results.filter((r) => r.status === "fulfilled").length,
    rejected: results.filter((r) => r.status === "rejected").length,
    rejections,
    socketErrors,
  }));
  finished = true;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
