// `bonsai data <step>`: the data pipeline's steps, each a file of its own built on data.ts's
// driver, and the dispatcher that runs one.
import { type FlagSpec, UsageError, flagHelp } from "./args.js";
import { labelStep, scoreStep, trainClassifierStep } from "./data-classifier.js";
import { dedupStep } from "./data-dedup.js";
import { filterStep } from "./data-filter.js";
import { perplexityStep, pruneStep } from "./data-model-steps.js";
import { synthStep } from "./data-synth.js";

/** The steps, each a file of its own. */
const steps: Record<string, { run: (argv: string[]) => Promise<void>; flags: FlagSpec; help: string }> = {
  dedup: dedupStep,
  filter: filterStep,
  label: labelStep,
  perplexity: perplexityStep,
  prune: pruneStep,
  score: scoreStep,
  synth: synthStep,
  "train-classifier": trainClassifierStep,
};

const dataUsage = (): string =>
  `usage: bonsai data <step> [input] [flags]\n\nsteps:\n${Object.entries(steps).map(([name, s]) => `  ${name.padEnd(18)}${s.help}`).join("\n")}\n\n` +
  'Input is a file or - (stdin, the default); output goes to --out or stdout. Run "bonsai data <step> --help" for a step\'s flags.';

export async function dataCommand(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(dataUsage() + "\n");
    return;
  }
  const step = steps[name];
  if (!step) throw new UsageError(`unknown data step "${name}" (steps: ${Object.keys(steps).join(", ")})`);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`usage: bonsai data ${name} [input] [flags]\n\n${step.help}\n\n${flagHelp(step.flags)}\n`);
    return;
  }
  await step.run(rest);
}
