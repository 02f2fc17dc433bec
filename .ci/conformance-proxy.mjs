// Loopback proxy for the MCP conformance suite, which cannot send an
// Authorization header: it listens on 127.0.0.1 (port 0), adds
// "Authorization: Bearer $NEXUS_CONFORMANCE_KEY" to every request and
// forwards it to $NEXUS_CONFORMANCE_TARGET (http://127.0.0.1:PORT) with
// every other header unchanged — Host and Origin included, so the
// server's Host and Origin checks see what the suite sent. Responses
// (SSE streams included) are streamed back as they arrive. Prints
// "listening PORT" once ready. Test tooling only; never in production.
import http from "node:http";

const key = process.env.NEXUS_CONFORMANCE_KEY;
const target = new URL(process.env.NEXUS_CONFORMANCE_TARGET ?? "");
if (!key || target.protocol !== "http:" || !["127.0.0.1", "localhost", "[::1]"].includes(target.hostname)) {
  console.error("set NEXUS_CONFORMANCE_KEY and a loopback NEXUS_CONFORMANCE_TARGET");
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${key}` };
  const up = http.request(
    { host: target.hostname.replace(/^\[|\]$/g, ""), port: target.port, method: req.method, path: req.url, headers },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      res.flushHeaders();
      upRes.pipe(res);
    },
  );
  up.on("error", (err) => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
    console.error(`proxy: ${err.message}`);
  });
  res.on("close", () => up.destroy());
  req.pipe(up);
});
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
