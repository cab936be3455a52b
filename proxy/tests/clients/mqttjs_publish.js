// Publishes through an MQTT broker with MQTT.js (npm `mqtt`), waiting for every
// acknowledgement. usage: node mqttjs_publish.js HOST PORT PREFIX [TRANSPORT]
// TRANSPORT is mqtt (default), mqtts, ws or wss (WebSocket at path /mqtt); with TLS the CA
// file is taken from the SLUICE_CA environment variable.
// Sends with MQTT 5: QoS 1 and QoS 2 messages with a user property and a content type, and
// with MQTT 3.1.1: one QoS 1 message. Exits non-zero on any failure.
const fs = require("fs");
const mqtt = require("mqtt");
const [host, port, prefix, transport = "mqtt"] = process.argv.slice(2);
const path = transport.startsWith("ws") ? "/mqtt" : "";
const url = `${transport}://${host}:${port}${path}`;
const tls = process.env.SLUICE_CA ? { ca: fs.readFileSync(process.env.SLUICE_CA) } : {};

function run(protocolVersion, messages) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion, clientId: `mqttjs-v${protocolVersion}`, reconnectPeriod: 0, ...tls });
    client.on("error", reject);
    client.on("connect", async () => {
      try {
        for (const [topic, payload, qos, properties] of messages) {
          await client.publishAsync(topic, payload, { qos, properties });
        }
        await client.endAsync();
        resolve();
      } catch (e) {
        reject(e);
      }
    });
  });
}

(async () => {
  const props = { userProperties: { "client-lib": "mqtt.js" }, contentType: "application/json" };
  await run(5, [
    [`${prefix}/v5/q1`, '{"lib":"mqtt.js","qos":1}', 1, props],
    [`${prefix}/v5/q2`, '{"lib":"mqtt.js","qos":2}', 2, props],
  ]);
  await run(4, [[`${prefix}/v311/q1`, "mqtt.js-v311-q1", 1, undefined]]);
})().catch((e) => {
  console.error(`mqtt.js: ${e}`);
  process.exit(1);
});
