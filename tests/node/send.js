// Sends records to a Forward server with the real @fluent-org/logger client.
// usage: node send.js PORT MODE ACK < events.json
//   MODE: default | Message | Forward | PackedForward | CompressedPackedForward
//   ACK:  ack | noack
//   events.json: [[unix_seconds, {record}], ...]
"use strict";
const { FluentClient, EventTime } = require("@fluent-org/logger");

async function main() {
  const [port, mode, ack] = process.argv.slice(2);
  const events = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const options = { socket: { host: "127.0.0.1", port: Number(port), timeout: 5000 } };
  if (mode !== "default") options.eventMode = mode;
  if (ack === "ack") options.ack = { ackTimeout: 5000 };
  const client = new FluentClient("node", options);
  const sent = events.map(([t, record]) =>
    client.emit("hdfs", record, EventTime.fromTimestamp(t * 1000)));
  await Promise.all(sent); // with acks: resolves only once the server acknowledged
  await client.shutdown();
  console.log(`sent ${events.length}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
