// Loaded with `node --import` by bench:dedup: at exit, the process's peak resident set size
// (getrusage's maxRSS, in KiB) on stderr, for the parent to read.
process.on("exit", () => {
  process.stderr.write(`bench-maxrss-kb ${process.resourceUsage().maxRSS}\n`);
});
