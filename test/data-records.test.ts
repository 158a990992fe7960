// The records every `bonsai data` step streams: the three formats read line by line as
// documents.ts reads them whole, malformed JSONL counted or refused, and written back unchanged.
import assert from "node:assert/strict";
import { test } from "node:test";
import { splitDocuments } from "../src/data/documents.js";
import { MalformedRecordError, formatRecord, readRecords, type DataRecord } from "../src/data/records.js";

async function* linesOf(text: string): AsyncGenerator<string> {
  // As readline gives them: no line ends, and a final newline makes no empty last line.
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === "") lines.pop();
  yield* lines;
}

async function collect(it: AsyncIterable<DataRecord>): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

test("stories, lines and jsonl stream into the documents splitDocuments finds, with their lines", async () => {
  const inputs: Record<"stories" | "lines" | "jsonl", string> = {
    stories: "Once there was a cat.\nIt sat.<|endoftext|>\n\n  A dog ran.  <|endoftext|><|endoftext|>\nThe end\nof it.\n<|endoftext|>tail",
    lines: "one\n\n  \ntwo two\r\nthree\n",
    jsonl: '{"text":"a b","score":2}\n\n{"text":"c","id":"x"}\n',
  };
  for (const format of ["stories", "lines", "jsonl"] as const) {
    const streamed = await collect(readRecords(linesOf(inputs[format]), { format }));
    const whole = splitDocuments(inputs[format], format);
    assert.deepEqual(streamed.map((r) => [r.text, r.line]), whole.map((d) => [d.text, d.line]), format);
  }
});

test("a malformed JSONL line is reported with its line number and skipped, or with strict stops the read", async () => {
  const text = '{"text":"ok"}\nnot json\n[1,2]\n{"body":"no text"}\n{"text":"also ok","n":1}\n';
  const bad: [number, string][] = [];
  const got = await collect(readRecords(linesOf(text), { format: "jsonl", onMalformed: (line, why) => bad.push([line, why]) }));
  assert.deepEqual(got.map((r) => r.text), ["ok", "also ok"]);
  assert.deepEqual(bad.map(([l]) => l), [2, 3, 4]);
  assert.match(bad[0][1], /invalid JSON/);
  assert.match(bad[1][1], /expected a JSON object/);
  assert.match(bad[2][1], /no string field "text"/);
  await assert.rejects(collect(readRecords(linesOf(text), { format: "jsonl", strict: true, name: "in.jsonl" })), (e: Error) => e instanceof MalformedRecordError && /in\.jsonl line 2: invalid JSON/.test(e.message));
});

test("records are written back in their format, JSONL with every field and the step's additions", async () => {
  const [r] = await collect(readRecords(linesOf('{"id":7,"body":"x y","meta":{"a":[1]}}'), { format: "jsonl", textField: "body" }));
  assert.equal(formatRecord(r, "jsonl", "body", { score: 0.5 }), '{"id":7,"body":"x y","meta":{"a":[1]},"score":0.5}\n');
  assert.equal(formatRecord({ text: "A story.\nTwo lines.", line: 1 }, "stories"), "A story.\nTwo lines.\n<|endoftext|>\n");
  assert.throws(() => formatRecord({ text: "a\nb", line: 3 }, "lines"), /line 3: a document with a line break/);
  // A stories file written back reads as the same stories.
  const stories = ["First.\nSecond line.", "Third."];
  const text = stories.map((t) => formatRecord({ text: t, line: 0 }, "stories")).join("");
  assert.deepEqual((await collect(readRecords(linesOf(text), { format: "stories" }))).map((r) => r.text), stories);
});

test("a sink lands a file whole on close, leaves the old one on abandon, and writes a device in place", async () => {
  const { mkdtempSync, readFileSync, writeFileSync, statSync, readdirSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { TextSink } = await import("../src/data/record-files-node.js");
  const dir = mkdtempSync(join(tmpdir(), "bonsai-sink-"));
  const file = join(dir, "out.jsonl");
  writeFileSync(file, "old\n");
  const lost = new TextSink(file);
  await lost.write("partial\n");
  lost.abandon();
  assert.equal(readFileSync(file, "utf8"), "old\n");
  const kept = new TextSink(file);
  await kept.write("new\n");
  assert.equal(readFileSync(file, "utf8"), "old\n", "nothing lands before close");
  await kept.close();
  assert.equal(readFileSync(file, "utf8"), "new\n");
  assert.deepEqual(readdirSync(dir), ["out.jsonl"], "no temporary file left");
  const device = new TextSink("/dev/null");
  await device.write("gone\n");
  await device.close();
  assert.ok(statSync("/dev/null").isCharacterDevice(), "/dev/null is still a device, not a renamed file");
});

test("--out-documents writes another format than the input's: stories in, JSONL records out", async () => {
  const { mkdtempSync, writeFileSync, readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { bonsai, assertOneLineError } = await import("./cli-helpers.js");
  const dir = mkdtempSync(join(tmpdir(), "bonsai-outfmt-"));
  const stories = ["One day a cat sat.\nIt was happy.", "A dog ran far away."];
  writeFileSync(join(dir, "in.txt"), stories.join("\n<|endoftext|>\n") + "\n");
  const out = join(dir, "out.jsonl");
  const r = bonsai("data", "dedup", "--exact", join(dir, "in.txt"), "--documents", "stories", "--out-documents", "jsonl", "--out", out, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l)), stories.map((text) => ({ text })));
  assertOneLineError(bonsai("data", "dedup", "--exact", join(dir, "in.txt"), "--out-documents", "csv"), /--out-documents must be one of stories, lines, jsonl/);
});
