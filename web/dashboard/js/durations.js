// Duration strings as the daemon reads them: one or more <whole number><unit>
// parts, units from largest to smallest, each at most once (w d h m s ms),
// e.g. "90s", "1h30m", "7d"; at most ten years.

const UNITS = [["w", 604800000], ["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000], ["ms", 1]];
const MAX_MS = 3653 * 86400000;

// -> milliseconds, or throws Error with what is wrong.
export function parseDuration(text) {
  if (typeof text !== "string" || !text.trim()) throw new Error('a duration like "15m", "1h" or "7d"');
  const s = text.trim();
  const re = /([0-9]+)(ms|w|d|h|m|s)/y;
  let at = 0;
  let total = 0;
  let lastRank = -1;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (!m) throw new Error(`"${s}" is not a duration; use parts like 90s, 15m, 1h, 7d (e.g. "1h30m")`);
    const rank = UNITS.findIndex((u) => u[0] === m[2]);
    if (rank <= lastRank) throw new Error(`"${s}": put units largest first, each once (e.g. "1h30m")`);
    lastRank = rank;
    total += Number(m[1]) * UNITS[rank][1];
    at = re.lastIndex;
  }
  if (total > MAX_MS) throw new Error(`"${s}" is longer than ten years`);
  return total;
}

export function durationError(text) {
  try {
    parseDuration(text);
    return null;
  } catch (e) {
    return e.message;
  }
}
