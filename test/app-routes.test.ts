// src/serve/app-routes-node.ts over real HTTP: the page's files with cross-origin isolation and their
// content types, /bonsai/model-info, /bonsai/model and /bonsai/tokenizer (HEAD, ranges, ETag),
// path traversal refused, every other request left to the server, and the files' content identity
// (sha256), which changes when a file is rewritten with other bytes of the same size.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CROSS_ORIGIN_ISOLATION_HEADERS, DEFAULT_APP_DIR, createAppRoutes } from "../src/serve/app-routes-node.js";

const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A raw request (node:http, so that paths such as /../x reach the server unnormalised). */
function get(port: number, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((ok, fail) => {
    const req = request({ host: "127.0.0.1", port, path, method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => ok({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", fail);
    req.end();
  });
}

test("app routes: page files, model endpoints, ranges, traversal, the rest left to the server", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bonsai-app-routes-"));
  const app = join(dir, "app");
  mkdirSync(join(app, "sub"), { recursive: true });
  writeFileSync(join(app, "index.html"), "<!doctype html><title>t</title>");
  writeFileSync(join(app, "main.js"), "export {};\n");
  writeFileSync(join(app, "main.css"), "body{}\n");
  writeFileSync(join(app, "sub", "x.wasm"), new Uint8Array([0, 97, 115, 109]));
  writeFileSync(join(dir, "secret.txt"), "not for the web\n");
  const model = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  writeFileSync(join(dir, "my model.bin"), model);
  writeFileSync(join(dir, "tok.bin"), "tokenizer bytes");

  const withTok = createAppRoutes({ modelPath: join(dir, "my model.bin"), tokenizerPath: join(dir, "tok.bin"), appDir: app });
  const withoutTok = createAppRoutes({ modelPath: join(dir, "my model.bin"), appDir: app });
  const server = createServer((req, res) => {
    const routes = req.headers["x-test-no-tokenizer"] ? withoutTok : withTok;
    void routes(req, res).then((answered) => {
      if (!answered) {
        res.writeHead(418, { "Content-Type": "text/plain" });
        res.end("the server's own route\n");
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  try {
    const isolated = (r: Reply) => {
      for (const [k, v] of Object.entries(CROSS_ORIGIN_ISOLATION_HEADERS)) assert.equal(r.headers[k.toLowerCase()], v, `${k} on ${r.status}`);
    };
    // The page and its assets.
    for (const [path, type, text] of [
      ["/", "text/html; charset=utf-8", "<!doctype html><title>t</title>"],
      ["/index.html", "text/html; charset=utf-8", "<!doctype html><title>t</title>"],
      ["/main.js", "text/javascript; charset=utf-8", "export {};\n"],
      ["/main.css", "text/css; charset=utf-8", "body{}\n"],
    ] as const) {
      const r = await get(port, path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers["content-type"], type, path);
      assert.equal(r.body.toString(), text, path);
      isolated(r);
    }
    assert.equal((await get(port, "/sub/x.wasm")).headers["content-type"], "application/wasm");
    const head = await get(port, "/main.js", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers["content-length"], "11");
    assert.equal(head.body.length, 0);

    // Nothing outside the app folder, however the path is spelled.
    for (const path of ["/../secret.txt", "/sub/../../secret.txt", "/..%2fsecret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt", "/%00"]) {
      const r = await get(port, path);
      assert.notEqual(r.status, 200, path);
      assert.doesNotMatch(r.body.toString(), /not for the web/, path);
      if (r.status !== 418) assert.equal(r.status, 404, path);
    }
    // Other requests are the server's: the API, unknown files, other methods.
    for (const [path, method] of [["/v1/models", "GET"], ["/v1/chat/completions", "POST"], ["/nothing-here.js", "GET"], ["/", "POST"], ["/bonsai/other", "GET"]]) {
      assert.equal((await get(port, path, { method })).status, 418, `${method} ${path}`);
    }

    // The model's description, and the file itself.
    const info = await get(port, "/bonsai/model-info");
    assert.equal(info.status, 200);
    isolated(info);
    assert.deepEqual(JSON.parse(info.body.toString()), {
      model: { name: "my model.bin", size: 1000, sha256: sha256(model), url: "/bonsai/model" },
      tokenizer: { name: "tok.bin", size: 15, sha256: sha256("tokenizer bytes"), url: "/bonsai/tokenizer" },
    });
    assert.equal(JSON.parse((await get(port, "/bonsai/model-info", { headers: { "x-test-no-tokenizer": "1" } })).body.toString()).tokenizer, null);
    const m = await get(port, "/bonsai/model");
    assert.equal(m.status, 200);
    isolated(m);
    assert.equal(m.headers["content-type"], "application/octet-stream");
    assert.equal(m.headers["x-bonsai-model-name"], "my%20model.bin");
    assert.equal(m.headers["content-length"], "1000");
    assert.equal(m.headers["accept-ranges"], "bytes");
    assert.equal(m.headers.etag, `"sha256-${sha256(model)}"`);
    assert.deepEqual(m.body, model);
    const unchanged = await get(port, "/bonsai/model", { headers: { "If-None-Match": `"sha256-${sha256(model)}"` } });
    assert.equal(unchanged.status, 304);
    assert.equal(unchanged.body.length, 0);
    isolated(unchanged);
    assert.equal((await get(port, "/bonsai/model", { headers: { "If-None-Match": '"sha256-0000"' } })).status, 200);
    const mh = await get(port, "/bonsai/model", { method: "HEAD" });
    assert.equal(mh.status, 200);
    assert.equal(mh.headers["content-length"], "1000");
    assert.equal(mh.body.length, 0);
    for (const [range, start, end] of [["bytes=10-19", 10, 19], ["bytes=990-", 990, 999], ["bytes=-5", 995, 999], ["bytes=995-5000", 995, 999]] as const) {
      const r = await get(port, "/bonsai/model", { headers: { Range: range } });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers["content-range"], `bytes ${start}-${end}/1000`, range);
      assert.deepEqual(r.body, model.subarray(start, end + 1), range);
    }
    const bad = await get(port, "/bonsai/model", { headers: { Range: "bytes=1000-" } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers["content-range"], "bytes */1000");
    assert.equal((await get(port, "/bonsai/model", { method: "POST" })).status, 405);

    const t = await get(port, "/bonsai/tokenizer");
    assert.equal(t.status, 200);
    assert.equal(t.headers["x-bonsai-tokenizer-name"], "tok.bin");
    assert.equal(t.body.toString(), "tokenizer bytes");
    const noTok = await get(port, "/bonsai/tokenizer", { headers: { "x-test-no-tokenizer": "1" } });
    assert.equal(noTok.status, 404);
    isolated(noTok);

    // The model rewritten in place with other bytes of the same size: a new identity (the page's
    // OPFS cache is keyed by it), the new bytes served, the old ETag no longer matching.
    const changed = Buffer.from(model);
    changed[500] ^= 0xff;
    writeFileSync(join(dir, "my model.bin"), changed);
    const info2 = JSON.parse((await get(port, "/bonsai/model-info")).body.toString()) as { model: { size: number; sha256: string } };
    assert.equal(info2.model.size, 1000);
    assert.equal(info2.model.sha256, sha256(changed));
    assert.notEqual(info2.model.sha256, sha256(model));
    const m2 = await get(port, "/bonsai/model", { headers: { "If-None-Match": `"sha256-${sha256(model)}"` } });
    assert.equal(m2.status, 200);
    assert.equal(m2.headers.etag, `"sha256-${sha256(changed)}"`);
    assert.deepEqual(m2.body, changed);
    // Asked again with nothing changed: the same identity.
    assert.equal((JSON.parse((await get(port, "/bonsai/model-info")).body.toString()) as { model: { sha256: string } }).model.sha256, sha256(changed));

    // A missing model file: 404 with a reason, not a crash.
    const gone = createAppRoutes({ modelPath: join(dir, "gone.gguf"), appDir: app });
    const s2 = createServer((req, res) => void gone(req, res));
    await new Promise<void>((ok) => s2.listen(0, "127.0.0.1", ok));
    try {
      const p2 = (s2.address() as AddressInfo).port;
      assert.equal((await get(p2, "/bonsai/model")).status, 404);
      assert.equal((await get(p2, "/bonsai/model-info")).status, 404);
    } finally {
      s2.close();
    }
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("app routes: the default app folder is dist/app", () => {
  assert.match(DEFAULT_APP_DIR.replace(/\\/g, "/"), /\/dist\/app\/$/);
});
