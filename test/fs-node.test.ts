import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commitFiles, readBytes, recoverCheckpointDir, writeFileAtomic } from "../src/io/fs-node.js";

const enc = new TextEncoder();

const scratchDirs: string[] = [];
after(() => scratchDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), "bonsai-fs-"));
  scratchDirs.push(d);
  return d;
}

/** Every file in `dir` with its text. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of readdirSync(dir).sort()) out[n] = readFileSync(join(dir, n), "utf8");
  return out;
}

const OLD = { "a.bin": "old a", "b.json": "old b", "c.txt": "old c" };
const NEW = { "a.bin": "new a", "b.json": "new b", "d.txt": "new d" };
const newFiles = () => Object.entries(NEW).map(([name, text]) => ({ name, bytes: enc.encode(text) }));
const REMOVE = ["c.txt"];

class Crash extends Error {}

/** A directory holding OLD, committed through the protocol. */
function oldDir(): string {
  const dir = join(scratch(), "ckpt");
  commitFiles(dir, Object.entries(OLD).map(([name, text]) => ({ name, bytes: enc.encode(text) })));
  assert.deepEqual(snapshot(dir), OLD);
  return dir;
}

/** Run the OLD → NEW commit, crashing right after `stage`. */
function crashCommitAt(stage: string): string {
  const dir = oldDir();
  assert.throws(
    () =>
      commitFiles(dir, newFiles(), {
        remove: REMOVE,
        onStage: (s) => {
          if (s === stage) throw new Crash(s);
        },
      }),
    Crash,
  );
  return dir;
}

test("readBytes: contents, and one-line errors", () => {
  const dir = scratch();
  writeFileSync(join(dir, "x"), Uint8Array.from([1, 2, 3]));
  const b = readBytes(join(dir, "x"));
  assert.ok(!Buffer.isBuffer(b), "a plain Uint8Array");
  assert.deepEqual(b, Uint8Array.from([1, 2, 3]));
  assert.throws(() => readBytes(join(dir, "missing")), { message: `file not found: ${join(dir, "missing")}` });
  assert.throws(() => readBytes(dir), { message: `is a directory: ${dir}` });
});

test("writeFileAtomic replaces the file and leaves no temporary", () => {
  const dir = scratch();
  const p = join(dir, "f.json");
  writeFileAtomic(p, enc.encode("one"));
  writeFileAtomic(p, enc.encode("two"));
  assert.deepEqual(snapshot(dir), { "f.json": "two" });
  assert.throws(() => writeFileAtomic(join(dir, "no", "such", "f"), enc.encode("x")), /file not found: .*f\.tmp/);
  assert.deepEqual(snapshot(dir), { "f.json": "two" });
});

test("commitFiles: a clean commit replaces the set", () => {
  const dir = oldDir();
  const stages: string[] = [];
  commitFiles(dir, newFiles(), { remove: REMOVE, onStage: (s) => stages.push(s) });
  assert.deepEqual(snapshot(dir), NEW);
  assert.deepEqual(stages, [
    "write:a.bin", "write:b.json", "write:d.txt", "tmp-synced", "journal-written", "committed",
    "rename:a.bin", "rename:b.json", "rename:d.txt", "remove:c.txt", "applied", "done",
  ]);
  assert.equal(recoverCheckpointDir(dir), "clean");
  assert.equal(recoverCheckpointDir(join(dir, "absent")), "clean");
});

test("commitFiles: a crash at any stage recovers to the complete old or new set", () => {
  const stages: string[] = [];
  commitFiles(oldDir(), newFiles(), { remove: REMOVE, onStage: (s) => stages.push(s) });
  const commitPoint = stages.indexOf("committed");
  for (const [k, stage] of stages.entries()) {
    const expected = k < commitPoint ? OLD : NEW;
    const dir = crashCommitAt(stage);
    if (stage !== "done") assert.notDeepEqual(snapshot(dir), expected, `${stage}: the crash left work for recovery`);
    const result = recoverCheckpointDir(dir);
    assert.equal(result, stage === "done" ? "clean" : k < commitPoint ? "rolled-back" : "rolled-forward", stage);
    assert.deepEqual(snapshot(dir), expected, `crash after ${stage}`);

    // Recovery itself may crash at any of its steps; running it again still converges.
    const recoveryStages: string[] = [];
    recoverCheckpointDir(crashCommitAt(stage), { onStage: (s) => recoveryStages.push(s) });
    for (const rs of recoveryStages) {
      const d = crashCommitAt(stage);
      assert.throws(() => recoverCheckpointDir(d, { onStage: (s) => { if (s === rs) throw new Crash(s); } }), Crash);
      recoverCheckpointDir(d);
      assert.deepEqual(snapshot(d), expected, `crash after ${stage}, then in recovery after ${rs}`);
    }
  }
});

test("commitFiles: a crash mid-write (torn temporaries) rolls back", () => {
  const dir = oldDir();
  writeFileSync(join(dir, "a.bin.tmp"), "new a, torn");
  writeFileSync(join(dir, ".commit.tmp"), '{"write":["a.b');
  assert.equal(recoverCheckpointDir(dir), "rolled-back");
  assert.deepEqual(snapshot(dir), OLD);
  // The next commit recovers first, then proceeds.
  writeFileSync(join(dir, "b.json.tmp"), "junk");
  commitFiles(dir, newFiles(), { remove: REMOVE });
  assert.deepEqual(snapshot(dir), NEW);
});

test("commitFiles: bad names and a damaged journal are reported", () => {
  const dir = oldDir();
  for (const name of ["", "..", "x/y", "x.tmp", ".commit"])
    assert.throws(() => commitFiles(dir, [{ name, bytes: new Uint8Array(0) }]), /checkpoint commit: invalid file name/);
  assert.throws(() => commitFiles(dir, [{ name: "a", bytes: new Uint8Array(0) }], { remove: ["a"] }), /listed twice/);
  writeFileSync(join(dir, ".commit"), "{not json");
  assert.throws(() => recoverCheckpointDir(dir), /checkpoint recovery: journal .*\.commit is unreadable/);
});
