// A raw WebSocket producer (npm `ws`): sends COUNT text messages "PREFIX-<i>" to URL and
// waits for one acknowledgement per message. usage: node ws_produce.js URL COUNT PREFIX
// Prints each acknowledgement (a JSON text message) on its own line; exits non-zero if the
// connection fails, closes early, or an acknowledgement is an error. With URL
// "expect-refusal:<status>:<url>", checks instead that the upgrade is refused with <status>.
const WebSocket = require("ws");
let [url, count, prefix] = process.argv.slice(2);
count = Number(count);

const refusal = url.match(/^expect-refusal:(\d+):(.*)$/);
if (refusal) {
  const ws = new WebSocket(refusal[2]);
  ws.on("unexpected-response", (_req, res) => {
    if (String(res.statusCode) === refusal[1]) process.exit(0);
    console.error(`ws: status ${res.statusCode}, expected ${refusal[1]}`);
    process.exit(1);
  });
  ws.on("open", () => { console.error("ws: upgrade accepted, expected a refusal"); process.exit(1); });
  ws.on("error", (e) => { console.error(`ws: ${e}`); process.exit(1); });
  return;
}

const ws = new WebSocket(url);
let acked = 0;
ws.on("open", () => {
  for (let i = 0; i < count; i++) ws.send(`${prefix}-${i}`);
});
ws.on("message", (data) => {
  const text = data.toString();
  console.log(text);
  if (JSON.parse(text).error !== undefined) {
    console.error(`ws: refused: ${text}`);
    process.exit(1);
  }
  if (++acked === count) ws.close(1000);
});
ws.on("close", (code) => {
  if (acked !== count) {
    console.error(`ws: closed with ${code} after ${acked} of ${count} acknowledgements`);
    process.exit(1);
  }
  process.exit(0);
});
ws.on("error", (e) => { console.error(`ws: ${e}`); process.exit(1); });
