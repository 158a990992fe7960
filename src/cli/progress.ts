// Progress on stderr: a redrawn bar on a terminal, periodic plain lines otherwise (logs, CI).

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

export class Progress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private lastLine = 0;

  constructor(
    private readonly total: number,
    private readonly logEvery: number,
  ) {}

  /** Redraw (TTY) or print every `logEvery` steps. */
  update(done: number, text: string, etaSeconds: number): void {
    const tail = `${done}/${this.total} ${text} | ETA ${formatDuration(etaSeconds)}`;
    if (this.tty) {
      const width = 24, filled = Math.round((width * done) / this.total);
      process.stderr.write(`\r\x1b[K[${"=".repeat(filled)}${" ".repeat(width - filled)}] ${tail}`);
    } else if (done - this.lastLine >= this.logEvery || done === this.total) {
      this.lastLine = done;
      process.stderr.write(`iter ${tail}\n`);
    }
  }

  /** A line that must not be overwritten by the bar. */
  log(line: string): void {
    process.stderr.write(this.tty ? `\r\x1b[K${line}\n` : `${line}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write("\n");
  }
}
