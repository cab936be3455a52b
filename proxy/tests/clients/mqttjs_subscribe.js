// Subscribes with MQTT.js (npm `mqtt`, MQTT 5) and prints what arrives.
// usage: node mqttjs_subscribe.js HOST PORT FILTER COUNT [TRANSPORT]
// TRANSPORT is mqtt (default) or ws (WebSocket at path /mqtt). Subscribes to FILTER at
// QoS 1, prints {"event":"subscribed"} once the SUBACK is in, then one
// {"event":"message","topic","payload","qos","retain","userProperties","contentType"} line
// per message, and exits 0 after COUNT messages (1 after 60 s, or on any error before then).
const mqtt = require("mqtt");
const [host, port, filter, count, transport = "mqtt"] = process.argv.slice(2);
const path = transport === "ws" ? "/mqtt" : "";
const url = `${transport}://${host}:${port}${path}`;
const emit = (event) => console.log(JSON.stringify(event));
let received = 0;

const client = mqtt.connect(url, { protocolVersion: 5, clientId: `mqttjs-sub-${transport}`, reconnectPeriod: 0 });
setTimeout(() => {
  console.error(`mqtt.js: ${received} of ${count} messages after 60 s`);
  process.exit(1);
}, 60_000).unref();
client.on("error", (e) => {
  // Once every message is in, the client is hanging up: MQTT.js may still write the last
  // PUBACK after its DISCONNECT, which the server has answered by closing (EPIPE).
  if (received === Number(count)) process.exit(0);
  console.error(`mqtt.js: ${e}`);
  process.exit(1);
});
client.on("connect", async () => {
  try {
    await client.subscribeAsync(filter, { qos: 1 });
    emit({ event: "subscribed" });
  } catch (e) {
    console.error(`mqtt.js: ${e}`);
    process.exit(1);
  }
});
client.on("message", async (topic, payload, packet) => {
  const p = packet.properties || {};
  emit({
    event: "message",
    topic,
    payload: payload.toString(),
    qos: packet.qos,
    retain: packet.retain,
    userProperties: p.userProperties || {},
    contentType: p.contentType || null,
  });
  received += 1;
  if (received === Number(count)) {
    await client.endAsync();
    process.exit(0);
  }
});
