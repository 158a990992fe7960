// Turning a stream of generated token ids into text pieces that are always whole characters and
// never show a stop string. The text is the suffix of decode(prompt + generated) not yet emitted,
// so any tokenizer's decoding rules (SentencePiece's leading space, byte tokens) apply unchanged.
// A suffix that ends in an incomplete UTF-8 character (decoded as U+FFFD so far) or could be the
// start of a stop string is held back until a later token decides it.
import type { Tokenizer } from "../tokenizer/tokenizer.js";

export class TextStream {
  private readonly ids: number[];
  private readonly promptChars: number;
  private readonly stops: string[];
  /** Generated text so far, and how much of it has been emitted. */
  private text = "";
  private emitted = 0;
  private done = false;

  constructor(
    private readonly tokenizer: Tokenizer,
    prompt: number[],
    stop: string[] = [],
  ) {
    this.ids = [...prompt];
    this.promptChars = tokenizer.decode(prompt).length;
    this.stops = stop.filter((s) => s.length > 0);
  }

  /** Add a token: the text it makes final, and whether a stop string completed (text ends before it). */
  push(token: number): { text: string; stopped: boolean } {
    if (this.done) throw new Error("text stream: token after a stop string");
    this.ids.push(token);
    this.text = this.tokenizer.decode(this.ids).slice(this.promptChars);
    const hit = this.firstStop();
    if (hit >= 0) {
      this.done = true;
      return { text: this.take(hit), stopped: true };
    }
    let safe = this.text.length - this.partialStopLength();
    if (this.text.endsWith("\uFFFD")) safe = this.emitted;
    return { text: this.take(safe), stopped: false };
  }

  /** At the end of generation: whatever was held back (nothing after a stop string). */
  flush(): string {
    return this.done ? "" : this.take(this.text.length);
  }

  private take(end: number): string {
    if (end <= this.emitted) return "";
    const piece = this.text.slice(this.emitted, end);
    this.emitted = end;
    return piece;
  }

  /** Index of the earliest stop string; emitted text never holds a whole one, so search near its end. */
  private firstStop(): number {
    let best = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, this.emitted - s.length + 1));
      if (i >= 0 && (best < 0 || i < best)) best = i;
    }
    return best;
  }

  /** Length of the longest suffix of the text that is a proper prefix of some stop string. */
  private partialStopLength(): number {
    let best = 0;
    for (const s of this.stops)
      for (let n = Math.min(s.length - 1, this.text.length); n > best; n--)
        if (this.text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
    return best;
  }
}
