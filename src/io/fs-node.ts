// File access for Node (the only io file allowed to import node: modules): reading with
// one-line errors, crash-safe single-file writes, and crash-safe multi-file commits for
// checkpoint directories. Synchronous: the callers are CLI commands and checkpoint saves that
// must finish before training goes on.
//
// Checkpoint commit protocol (commitFiles / recoverCheckpointDir). Goal: whenever the process
// or machine dies, running recoverCheckpointDir on the directory leaves either the complete old
// set of files or the complete new set, never a mix.
//   1. Recover first: a previous commit may have been interrupted.
//   2. Write every new file as NAME.tmp and fsync it; fsync the directory, so the .tmp files
//      are durable before anything refers to them.
//   3. Write the journal `.commit.tmp` = {"write": [names], "remove": [names]}, fsync it, rename
//      it to `.commit`, fsync the directory. THE COMMIT POINT: once `.commit` exists, the new
//      set wins.
//   4. Rename each NAME.tmp over NAME, delete each name to remove; fsync the directory.
//   5. Delete `.commit`; fsync the directory.
// Recovery: if `.commit` exists, redo step 4 (a missing NAME.tmp means that rename already
// happened, because step 2 made every .tmp durable before step 3), then step 5: roll forward.
// Otherwise delete every *.tmp, `.commit.tmp` included: the old files were never touched, so
// this rolls back. Recovery only repeats idempotent steps, so it may itself be interrupted and
// run again. The directory's *.tmp files belong to this protocol; one writer at a time.

import * as fs from "node:fs";
import * as path from "node:path";

const JOURNAL = ".commit";
const TMP = ".tmp";

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** Turn a Node error into a one-line message naming the path. */
function explain(e: unknown, p: string, doing: string): Error {
  const code = errno(e);
  const msg =
    code === "ENOENT" ? `file not found: ${p}`
    : code === "EISDIR" ? `is a directory: ${p}`
    : code === "ENOTDIR" ? `not a directory (in path): ${p}`
    : code === "EACCES" || code === "EPERM" ? `permission denied: ${p}`
    : code === "ENOSPC" ? `no space left on device writing ${p}`
    : `${doing} ${p}: ${(e as Error).message}`;
  return new Error(msg, { cause: e });
}

/** Run `f`, rethrowing its error as a one-line message about `p`. */
function io<T>(p: string, doing: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw explain(e, p, doing);
  }
}

export function readBytes(p: string): Uint8Array {
  const buf = io(p, "cannot read", () => fs.readFileSync(p));
  // A plain Uint8Array, not a Buffer: library code compares and slices it as one.
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function writeAndSync(p: string, bytes: Uint8Array): void {
  const fd = io(p, "cannot write", () => fs.openSync(p, "w"));
  try {
    io(p, "cannot write", () => {
      for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at, bytes.length - at);
      fs.fsyncSync(fd);
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** Make a directory's entries (creations, renames, deletions) durable. */
function syncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, "r");
  } catch {
    return; // Windows cannot open directories; there, renames are as durable as they get.
  }
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    const code = errno(e);
    if (code !== "EINVAL" && code !== "EPERM" && code !== "EBADF") throw explain(e, dir, "cannot sync");
  } finally {
    fs.closeSync(fd);
  }
}

function removeIfPresent(p: string): void {
  try {
    fs.unlinkSync(p);
  } catch (e) {
    if (errno(e) !== "ENOENT") throw explain(e, p, "cannot delete");
  }
}

function rename(from: string, to: string): void {
  io(to, `cannot rename ${from} onto`, () => fs.renameSync(from, to));
}

/** Replace `p` with `bytes` so that a crash leaves either the old or the new content. */
export function writeFileAtomic(p: string, bytes: Uint8Array): void {
  const tmp = p + TMP;
  try {
    writeAndSync(tmp, bytes);
    rename(tmp, p);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    throw e;
  }
  syncDir(path.dirname(p));
}

export interface CommitOptions {
  /** Names to delete as part of the same commit (old files the new set does not have). */
  remove?: string[];
  /** For tests: called after each step; throwing there simulates a crash at that point. */
  onStage?: (stage: string) => void;
}

function checkName(name: string): void {
  if (
    typeof name !== "string" || name === "" || name === "." || name === ".." || name.includes("/") ||
    name.includes("\\") || name.endsWith(TMP) || name === JOURNAL
  )
    throw new Error(`checkpoint commit: invalid file name ${JSON.stringify(name)} (plain names only, not ending in ${TMP}, not ${JOURNAL})`);
}

interface Journal {
  write: string[];
  remove: string[];
}

/** Write all `files` into `dir` and delete `opts.remove`, all or nothing (protocol above). */
export function commitFiles(dir: string, files: { name: string; bytes: Uint8Array }[], opts: CommitOptions = {}): void {
  const stage = opts.onStage ?? (() => undefined);
  const journal: Journal = { write: files.map((f) => f.name), remove: opts.remove ?? [] };
  const all = [...journal.write, ...journal.remove];
  all.forEach(checkName);
  if (new Set(all).size !== all.length) throw new Error(`checkpoint commit: a file name is listed twice`);

  io(dir, "cannot create directory", () => fs.mkdirSync(dir, { recursive: true }));
  recoverCheckpointDir(dir);

  for (const f of files) {
    writeAndSync(path.join(dir, f.name + TMP), f.bytes);
    stage(`write:${f.name}`);
  }
  syncDir(dir);
  stage("tmp-synced");

  writeAndSync(path.join(dir, JOURNAL + TMP), new TextEncoder().encode(JSON.stringify(journal)));
  stage("journal-written");
  rename(path.join(dir, JOURNAL + TMP), path.join(dir, JOURNAL));
  syncDir(dir);
  stage("committed");

  apply(dir, journal, stage);
}

/** Steps 4 and 5; safe to repeat. */
function apply(dir: string, journal: Journal, stage: (s: string) => void): void {
  for (const name of journal.write) {
    const tmp = path.join(dir, name + TMP);
    if (fs.existsSync(tmp)) rename(tmp, path.join(dir, name));
    stage(`rename:${name}`);
  }
  for (const name of journal.remove) {
    removeIfPresent(path.join(dir, name));
    stage(`remove:${name}`);
  }
  syncDir(dir);
  stage("applied");
  removeIfPresent(path.join(dir, JOURNAL));
  syncDir(dir);
  stage("done");
}

/**
 * Finish or undo an interrupted commitFiles (call when opening a checkpoint directory).
 * Returns what it did; "clean" also when the directory does not exist.
 */
export function recoverCheckpointDir(dir: string, opts: Pick<CommitOptions, "onStage"> = {}): "clean" | "rolled-forward" | "rolled-back" {
  const stage = opts.onStage ?? (() => undefined);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if (errno(e) === "ENOENT") return "clean";
    throw explain(e, dir, "cannot list");
  }
  if (names.includes(JOURNAL)) {
    const jp = path.join(dir, JOURNAL);
    let journal: Journal;
    try {
      journal = JSON.parse(new TextDecoder().decode(readBytes(jp))) as Journal;
      if (!Array.isArray(journal.write) || !Array.isArray(journal.remove)) throw new Error("bad shape");
      [...journal.write, ...journal.remove].forEach(checkName);
    } catch (e) {
      // The journal is renamed into place whole, so this is damage, not an interrupted write.
      throw new Error(`checkpoint recovery: journal ${jp} is unreadable (${(e as Error).message}); inspect the directory by hand`, { cause: e });
    }
    apply(dir, journal, stage);
    deleteStrayTmp(dir, stage);
    return "rolled-forward";
  }
  if (!names.some((n) => n.endsWith(TMP))) return "clean";
  deleteStrayTmp(dir, stage);
  return "rolled-back";
}

function deleteStrayTmp(dir: string, stage: (s: string) => void): void {
  const stray = io(dir, "cannot list", () => fs.readdirSync(dir)).filter((n) => n.endsWith(TMP));
  for (const n of stray) {
    removeIfPresent(path.join(dir, n));
    stage(`delete:${n}`);
  }
  if (stray.length > 0) syncDir(dir);
}
