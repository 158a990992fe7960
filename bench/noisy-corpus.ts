// E6's corpus: real TinyStories mixed with the noise web corpora carry, each document labelled
// with what it is, so that what the data pipeline removes can be scored (precision and recall
// per kind of noise). Deterministic for a seed. Kinds:
//   clean           a story as it is
//   duplicate       an earlier story again, with its whitespace and case changed
//   near-duplicate  an earlier story with about 1 word in 33 substituted, dropped or doubled
//   boilerplate     a story with web chrome lines around it (cookie notice, share buttons, …)
//   gibberish       strings of random letters as words and sentences
//   spam            one advertising phrase repeated many times
import { Rng } from "../src/util/rng.js";

export type NoiseKind = "clean" | "duplicate" | "near-duplicate" | "boilerplate" | "gibberish" | "spam";
export const noiseKinds: readonly NoiseKind[] = ["clean", "duplicate", "near-duplicate", "boilerplate", "gibberish", "spam"];

export interface LabelledDocument {
  text: string;
  noise: NoiseKind;
}

/** Share of the documents of each noisy kind (the rest are clean). */
const MIX: [NoiseKind, number][] = [["duplicate", 0.1], ["near-duplicate", 0.1], ["boilerplate", 0.07], ["gibberish", 0.07], ["spam", 0.06]];

const CHROME = [
  "Click here to subscribe to our newsletter!", "Share this: Facebook Twitter Pinterest Email", "Copyright 2023 Story Corner. All rights reserved.",
  "We use cookies to improve your experience. By using this site you accept our cookie policy.", "Privacy Policy | Terms of Use | Contact Us",
  "Read more", "Posted in Bedtime Stories", "Leave a comment", "Home > Stories > Animals", "Sign up for free to unlock more stories",
];
const ADS = [
  "Buy cheap watches online now, best price guaranteed!", "Win a free phone today, click the link!", "Lose weight fast with this one trick!",
  "Hot deals on shoes, 90% off, order now!", "Make money from home, no experience needed!",
];

/**
 * `stories` with noise mixed in: about 60% of the documents are clean stories. A duplicate or
 * near-duplicate always comes after the story it copies (so "keep the first" keeps the original
 * and removes exactly the labelled copies); boilerplate wraps stories that appear nowhere else.
 */
export function makeNoisyCorpus(stories: readonly string[], seed = 1): LabelledDocument[] {
  if (stories.length < 10) throw new Error(`a noisy corpus needs at least 10 stories (got ${stories.length})`);
  const rng = new Rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)];
  const shuffle = <T>(xs: T[]): T[] => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  };
  const cleanShare = 1 - MIX.reduce((s, [, p]) => s + p, 0);
  const share = (kind: NoiseKind): number => MIX.find(([k]) => k === kind)![1];
  // Stories for the boilerplate documents are set aside: their content is unique.
  const order = shuffle(stories.map((_, i) => i));
  const wrapped = Math.round((stories.length / cleanShare) * share("boilerplate"));
  const aside = order.slice(0, wrapped), kept = order.slice(wrapped);
  const total = Math.round(kept.length / cleanShare);
  const docs: LabelledDocument[] = kept.map((i) => ({ text: stories[i], noise: "clean" }));
  // Copies go in after their original: at a random later position (inserted back to front).
  const copies: { after: number; doc: LabelledDocument }[] = [];
  for (const kind of ["duplicate", "near-duplicate"] as const)
    for (let n = 0; n < Math.round(total * share(kind)); n++) {
      const at = Math.floor(rng.next() * docs.length);
      copies.push({ after: at + Math.floor(rng.next() * (docs.length - at)), doc: { text: noisy(kind, docs[at].text, rng, pick), noise: kind } });
    }
  const others: LabelledDocument[] = aside.map((i) => ({ text: noisy("boilerplate", stories[i], rng, pick), noise: "boilerplate" }));
  for (const kind of ["gibberish", "spam"] as const) for (let n = 0; n < Math.round(total * share(kind)); n++) others.push({ text: noisy(kind, "", rng, pick), noise: kind });
  const slots: LabelledDocument[][] = docs.map((d) => [d]);
  for (const c of copies) slots[c.after].push(c.doc);
  for (const o of others) slots[Math.floor(rng.next() * slots.length)].push(o);
  return slots.flat();
}

function noisy(kind: NoiseKind, story: string, rng: Rng, pick: <T>(xs: readonly T[]) => T): string {
  switch (kind) {
    case "duplicate":
      // Exact dedup normalises case and whitespace; these must still count as duplicates.
      return (rng.next() < 0.5 ? story.toLowerCase() : story).replace(/ /g, () => (rng.next() < 0.05 ? "  " : " "));
    case "near-duplicate": {
      const words = story.split(" ");
      const out: string[] = [];
      for (const w of words) {
        const r = rng.next();
        if (r < 0.01) continue; // dropped
        if (r < 0.02) out.push(pick(words)); // substituted
        else out.push(w);
        if (r > 0.99) out.push(w); // doubled
      }
      return out.join(" ");
    }
    case "boilerplate": {
      const head = Array.from({ length: 1 + Math.floor(rng.next() * 3) }, () => pick(CHROME));
      const tail = Array.from({ length: 2 + Math.floor(rng.next() * 3) }, () => pick(CHROME));
      return [...head, story, ...tail].join("\n");
    }
    case "gibberish": {
      const letters = "abcdefghijklmnopqrstuvwxyz";
      const word = (): string => Array.from({ length: 2 + Math.floor(rng.next() * 9) }, () => pick([...letters])).join("");
      const sentence = (): string => Array.from({ length: 5 + Math.floor(rng.next() * 10) }, word).join(" ") + ".";
      return Array.from({ length: 4 + Math.floor(rng.next() * 8) }, sentence).join(" ");
    }
    case "spam": {
      const ad = pick(ADS);
      return Array.from({ length: 10 + Math.floor(rng.next() * 30) }, () => ad).join(rng.next() < 0.5 ? " " : "\n");
    }
    default:
      return story;
  }
}
