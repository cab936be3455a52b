// A raw WebSocket subscriber (npm `ws`): connects to URL (e.g. ws://host:port/topics/t/ws)
// and prints one JSON line per event: {"open":true} once the upgrade is answered, then for
// each message {"text":"..."} or {"binary":"<base64>"}, and {"close":CODE,"reason":"..."} when
// the connection closes. Closes normally (1000) after COUNT messages and exits 0; exits
// non-zero if the connection fails or the server closes it before COUNT messages.
// usage: node ws_subscribe.js URL COUNT
// With URL "expect-refusal:<status>:<url>", checks instead that the upgrade is refused with
// <status> and prints the refusal's body.
const WebSocket = require("ws");
let [url, count] = process.argv.slice(2);
count = Number(count);

const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const refusal = url.match(/^expect-refusal:(\d+):(.*)$/);
if (refusal) {
  const ws = new WebSocket(refusal[2]);
  ws.on("unexpected-response", (_req, res) => {
    let body = "";
    res.on("data", (chunk) => (body += chunk));
    res.on("end", () => {
      print({ status: res.statusCode, body });
      process.exit(String(res.statusCode) === refusal[1] ? 0 : 1);
    });
  });
  ws.on("open", () => { console.error("ws: upgrade accepted, expected a refusal"); process.exit(1); });
  ws.on("error", (e) => { console.error(`ws: ${e}`); process.exit(1); });
  return;
}

const ws = new WebSocket(url);
let received = 0;
ws.on("open", () => {
  print({ open: true });
  if (count === 0) ws.close(1000);
});
ws.on("message", (data, isBinary) => {
  print(isBinary ? { binary: data.toString("base64") } : { text: data.toString("utf8") });
  if (++received === count) ws.close(1000);
});
ws.on("close", (code, reason) => {
  print({ close: code, reason: reason.toString() });
  if (received < count) {
    console.error(`ws: closed with ${code} ${reason} after ${received} of ${count} messages`);
    process.exit(1);
  }
  process.exit(0);
});
ws.on("error", (e) => { console.error(`ws: ${e}`); process.exit(1); });
