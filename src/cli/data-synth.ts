// `bonsai data synth`: synthetic data from a teacher (the TinyStories recipe by default). Record
// i's prompt is drawn from --template with (--seed, i); the teacher — a model in this process
// (--teacher) or an OpenAI-compatible server (--endpoint) — answers it; the answer is appended
// to --out as one JSONL line {id, text, prompt, ingredients, teacher, usage, finish_reason}.
// A rerun resumes: the ids already in --out are skipped (after checking they are this command's
// prompts), a cut final line is truncated away, and no id is ever written twice.
import { readFileSync } from "node:fs";
import { BUILTIN_TEMPLATES } from "../data/synth/templates.js";
import { type Recipe, TemplateError, drawPrompt, makeRecipe, parseTemplate } from "../data/synth/template.js";
import { type WordLists, defaultWordLists, formatWordLists, parseWordLists } from "../data/synth/words.js";
import { type SynthRecord, type SynthSummary, OutputDedup, minhashNearDuplicates, synthesize } from "../data/synth/synthesize.js";
import { type RecordLog, openRecordLog } from "../data/synth/output-node.js";
import { type FlagSpec, Flags, UsageError, backendFlags } from "./args.js";
import { RateLine } from "./data.js";
import { teacherFlags, teacherFromFlags } from "./teacher-flags.js";

const templateNames = Object.keys(BUILTIN_TEMPLATES);

const flags: FlagSpec = {
  ...teacherFlags,
  count: { type: "string", help: "records to make: ids 0 … N-1 (required)" },
  concurrency: { type: "string", help: "requests at once (4); an in-process teacher decodes that many together" },
  seed: { type: "string", help: "draws record i's prompt with i, and its sampling seeds with i and the attempt (1337)" },
  "max-tokens": { type: "string", help: "most tokens an answer may have (512)" },
  temperature: { type: "string", help: "sampling temperature (1)" },
  "top-p": { type: "string", help: "nucleus sampling: the most likely tokens holding this probability mass (1 = off)" },
  template: { type: "string", help: `a shipped template (${templateNames.join(", ")}) or a template file (default tinystories; see --print-template)` },
  words: { type: "string", help: "the vocabulary for the placeholders: a word-list file ([verb], [noun], [adjective] … each followed by comma-separated entries) or JSON (default: 1,500 simple English words)" },
  retries: { type: "string", help: "--endpoint: retries of a request on 429, 5xx, network errors and timeouts (backoff with jitter, or Retry-After); and, for any teacher, redraws with another sampling seed of an answer that is empty or a duplicate (3)" },
  dedup: { type: "string", help: "drop answers that duplicate a kept record's text: minhash (default: exactly after normalisation, or nearly by MinHash, as data dedup compares) or exact" },
  out: { type: "string", help: "the JSONL file to append records to, resumed when it exists (required; - writes to stdout, without resuming)" },
  "print-template": { type: "boolean", help: "print the template (--template's) and exit" },
  "print-words": { type: "boolean", help: "print the vocabulary (--words') and exit" },
  quiet: { type: "boolean", help: "no progress line" },
  ...backendFlags,
};


/** --template and --words, read and bound; template mistakes are the user's (one line). */
function recipeFromFlags(f: Flags): { recipe: Recipe; vocabulary: WordLists } {
  const spec = f.str("template") ?? "tinystories";
  const builtin = BUILTIN_TEMPLATES[spec];
  const source = builtin ?? readText(spec, "--template");
  const wordsFile = f.str("words");
  try {
    const vocabulary = wordsFile === undefined ? defaultWordLists() : parseWordLists(readText(wordsFile, "--words"), wordsFile);
    return { recipe: makeRecipe(parseTemplate(source, builtin ? `template ${spec}` : spec), vocabulary), vocabulary };
  } catch (e) {
    if (e instanceof TemplateError) throw new UsageError(e.message);
    throw e;
  }
}

function readText(file: string, flag: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const names = flag === "--template" ? ` (shipped templates: ${templateNames.join(", ")})` : "";
    throw new UsageError(`${flag} ${file}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (e as Error).message}${names}`);
  }
}

const int = (n: number): string => n.toLocaleString("en-US");

/** "bonsai data synth: 100 records written to out.jsonl (20 there before), 3 duplicates dropped (…), …". */
export function describeSynthSummary(out: string, s: SynthSummary, before: number): string {
  const dups = s.duplicates.exact + s.duplicates.near;
  const rate = s.seconds > 0 ? ` (${(s.written / s.seconds).toFixed(1)} records/s, ${Math.round(s.completionTokens / s.seconds)} tokens/s)` : "";
  return (
    `bonsai data synth: ${s.written} record${s.written === 1 ? "" : "s"} written to ${out === "-" ? "stdout" : out}${before ? ` (${before} there before)` : ""}, ` +
    `${dups} duplicate${dups === 1 ? "" : "s"} dropped (exact ${s.duplicates.exact}, near ${s.duplicates.near}), ${s.empty} empty, ` +
    `${s.givenUp} id${s.givenUp === 1 ? "" : "s"} given up, ${s.failures} failed, ` +
    `${int(s.promptTokens + s.completionTokens)} tokens (${int(s.promptTokens)} prompt + ${int(s.completionTokens)} completion), ${s.seconds.toFixed(1)} s${rate}`
  );
}

async function run(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, flags);
  if (f.positionals.length > 0) throw new UsageError(`bonsai data synth reads no input (got ${f.positionals.join(" ")}); its prompts come from --template`);
  const { recipe, vocabulary } = recipeFromFlags(f);
  if (f.bool("print-template")) {
    process.stdout.write(recipe.template.source.replace(/\n?$/, "\n"));
    return;
  }
  if (f.bool("print-words")) {
    process.stdout.write(formatWordLists(vocabulary));
    return;
  }
  if (!f.has("count")) throw new UsageError("--count is required: how many records to make");
  const count = f.int("count", 0, 0);
  const concurrency = f.int("concurrency", 4, 1);
  const seed = f.int("seed", 1337, 0);
  const maxTokens = f.int("max-tokens", 512, 1);
  const temperature = f.num("temperature", 1, { min: 0 });
  const topP = f.has("top-p") ? f.num("top-p", 1, { min: 0, exclusiveMin: true, max: 1 }) : undefined;
  const retries = f.int("retries", 3, 0);
  const outFile = f.required("out");
  const dedupMode = f.str("dedup") ?? "minhash";
  if (dedupMode !== "minhash" && dedupMode !== "exact") throw new UsageError(`--dedup must be minhash or exact (got "${dedupMode}")`);
  const quiet = f.bool("quiet");
  let progress: RateLine | null = null;
  const log = (line: string): void => (progress ? progress.log(line) : void process.stderr.write(line + "\n"));
  const makeTeacher = teacherFromFlags(f, { concurrency, retries, log, step: "synth" });

  // Read back what an earlier run wrote: its ids are skipped, its texts deduplicated against.
  const dedup = new OutputDedup(dedupMode === "minhash" ? minhashNearDuplicates() : null);
  const done = new Set<number>();
  let out: RecordLog | null = null;
  let before = 0;
  if (outFile !== "-") {
    const opened = await openRecordLog(outFile, (r) => {
      if (drawPrompt(recipe, seed, r.id).prompt !== r.prompt)
        throw new UsageError(`${outFile} line ${r.line}: record ${r.id}'s prompt is not the one this command draws for it (written with another --seed, --template or --words?); resume with those, or give another --out`);
      done.add(r.id);
      dedup.check(r.id, r.text);
    });
    out = opened.out;
    before = opened.records;
    if (opened.droppedBytes > 0) log(`bonsai data synth: ${outFile}: truncated a cut final line (${opened.droppedBytes} bytes)`);
  }
  try {
    const teacher = await makeTeacher();
    let todo = count;
    for (const id of done) if (id < count) todo--;
    if (before > 0 && !quiet) log(`bonsai data synth: resuming ${outFile}: ${before} records there, ${todo} of ${count} to make`);
    progress = new RateLine("bonsai data synth", quiet, todo);
    let processed = 0;
    const write = (r: SynthRecord): void => {
      if (out) out.write(r);
      else process.stdout.write(JSON.stringify(r) + "\n");
    };
    let summary: SynthSummary;
    try {
      summary = await synthesize({
        teacher, recipe, count, seed, concurrency, maxTokens, temperature, topP, retries, done, dedup, write,
        onProgress: (s) => {
          processed++;
          progress!.tick(s.written, processed, `, ${Math.round(s.completionTokens / Math.max(s.seconds, 1e-9))} tokens/s`);
        },
        onEvent: (e) => {
          if (e.kind === "failure") log(`bonsai data synth: record ${e.id} failed: ${e.message}`);
          else if (e.kind === "given-up") log(`bonsai data synth: record ${e.id} given up: ${e.attempts} answers were all empty or duplicates`);
        },
      });
    } finally {
      progress.done();
    }
    process.stderr.write(describeSynthSummary(outFile, summary, before) + "\n");
    if (summary.failures > 0) throw new Error(`${summary.failures} record${summary.failures === 1 ? "" : "s"} failed; run the same command again to make them`);
  } finally {
    out?.close();
  }
}

export const synthStep = {
  run,
  flags,
  help: "synthetic records from a teacher model or server (TinyStories prompts by default), resumable",
};
