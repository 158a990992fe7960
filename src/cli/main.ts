#!/usr/bin/env node
// The `bonsai` command line. Each subcommand lives in its own file; errors become one line on
// stderr and a non-zero exit status, never a stack trace (set BONSAI_DEBUG=1 to see one).
import { trainFlags, train } from "./train.js";
import { evalCommand, evalFlags } from "./eval.js";
import { generateCommand, generateFlags } from "./generate.js";
import { serveCommand, serveFlags } from "./serve.js";
import { dataCommand } from "./data-command.js";
import { convertCommand, convertFlags } from "./convert.js";
import { demoCommand, demoFlags } from "./demo.js";
import { exportCommand, exportFlags } from "./export.js";
import { tokenizerCommand, tokenizerFlags } from "./tokenizer.js";
import { quantizeCommand, quantizeFlags } from "./quantize.js";
import { distill, distillCacheCommand, distillCacheFlags, distillFlags } from "./distill.js";
import { type FlagSpec, Flags, UsageError, flagHelp } from "./args.js";

const usage = `bonsai — small language models in TypeScript

usage: bonsai <command> [flags]

commands:
  demo       train a small model on the bundled Brown Corpus, then sample from it
  train      train a Llama model on a text file        (--data FILE --out DIR ...)
  distill    train a student from a teacher             (--teacher PATH | --teacher-cache F, --data FILE --out DIR ...)
  distill-cache  store a teacher's top-k log-probabilities (--teacher PATH --data FILE --top-k K --out F)
  eval       mean cross-entropy over a data split       (--model DIR --data FILE --split val)
  generate   sample text from a model                   (--model PATH --prompt TEXT ...)
  serve      an OpenAI-compatible server and chat page  (--model PATH [--port 8080 --parallel 4])
  convert    any loadable model → a Bonsai/HF directory (--model PATH --out DIR)
  export     any loadable model → GGUF or an HF directory (--model PATH --format gguf --quant q8_0 --out F)
  quantize   any loadable model → a Q8_0/Q4_0 GGUF     (--model PATH --quant q8_0 --out F)
  tokenizer  train a BPE tokenizer                      (tokenizer train --data FILE --vocab-size N --out F.json)
  data       the data pipeline: filter, dedup, score, synthesise (data <step> [input] [flags]; "bonsai data" lists the steps)

Run "bonsai <command> --help" for a command's flags.`;

// `ownHelp`: a command with subcommands answers --help itself.
const commands: Record<string, { run: (argv: string[]) => Promise<void>; flags: FlagSpec; ownHelp?: boolean }> = {
  train: { run: async (argv) => void (await train(Flags.parse(argv, trainFlags))), flags: trainFlags },
  distill: { run: async (argv) => void (await distill(Flags.parse(argv, distillFlags))), flags: distillFlags },
  "distill-cache": { run: distillCacheCommand, flags: distillCacheFlags },
  eval: { run: evalCommand, flags: evalFlags },
  generate: { run: generateCommand, flags: generateFlags },
  serve: { run: serveCommand, flags: serveFlags },
  convert: { run: convertCommand, flags: convertFlags },
  export: { run: exportCommand, flags: exportFlags },
  tokenizer: { run: tokenizerCommand, flags: tokenizerFlags },
  quantize: { run: quantizeCommand, flags: quantizeFlags },
  demo: { run: demoCommand, flags: demoFlags },
  data: { run: dataCommand, flags: {}, ownHelp: true },
};

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(usage + "\n");
    return;
  }
  const command = commands[cmd];
  if (!command) throw new UsageError(`unknown command "${cmd}" (commands: ${Object.keys(commands).join(", ")})`);
  if (!command.ownHelp && (rest.includes("--help") || rest.includes("-h"))) {
    process.stdout.write(`usage: bonsai ${cmd} [flags]\n\n${flagHelp(command.flags)}\n`);
    return;
  }
  await command.run(rest);
}

// A closed pipe (`bonsai generate | head`) ends the output, not the program with a stack trace.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

main(process.argv.slice(2)).catch((e: unknown) => {
  const err = e instanceof Error ? e : new Error(String(e));
  if (process.env.BONSAI_DEBUG) console.error(err);
  else process.stderr.write(`bonsai: error: ${err.message.split("\n")[0]}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
