// A Node.js client of the eventseal NATS gateway (examples/nats): TLS first, with a client
// certificate whose URI SAN is the client's identity. The gateway seals what it publishes
// and opens what it receives, if the policy names it as a reader.
//
//   node nats-client.mjs publish tls://127.0.0.1:4443 ca.pem cert.pem key.pem orders.acme.created event.json
//   node nats-client.mjs receive tls://127.0.0.1:4443 ca.pem cert.pem key.pem orders.acme.created
//
// `receive` prints "ready" once its subscription is in place, then the first message's
// payload, base64 encoded, on one line.
import { connect } from "@nats-io/transport-node";
import { readFileSync } from "node:fs";

const [mode, server, caFile, certFile, keyFile, subject, eventFile] = process.argv.slice(2);
const nc = await connect({
  servers: server,
  // Envoy terminates TLS before any NATS byte: the handshake comes first.
  tls: { handshakeFirst: true, caFile, certFile, keyFile },
  // Never follow a server an INFO names: that would go around the gateway.
  ignoreClusterUpdates: true,
});
if (mode === "publish") {
  nc.publish(subject, readFileSync(eventFile));
  await nc.flush();
} else if (mode === "receive") {
  const sub = nc.subscribe(subject, { max: 1 });
  // A flush is a round trip to the server: the subscription is in place.
  await nc.flush();
  console.log("ready");
  for await (const message of sub) {
    console.log(Buffer.from(message.data).toString("base64"));
  }
} else {
  console.error(`unknown mode ${mode}: publish or receive`);
  process.exitCode = 2;
}
await nc.close();
