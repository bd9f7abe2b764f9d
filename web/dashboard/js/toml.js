// Automation definitions as the files `retenshund apply` reads: JSON, or TOML
// with the same shape (top-level keys, [tables], [[steps]]). JSON null has no
// TOML form, so null values are left out (the API treats a missing key the same).

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function key(k) {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function scalar(v) {
  if (typeof v === "string") return JSON.stringify(v); // JSON escapes are valid TOML basic-string escapes
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error("TOML cannot hold " + v);
    return String(v);
  }
  if (typeof v === "boolean") return v ? "true" : "false";
  throw new Error("cannot write " + typeof v + " as TOML");
}

function value(v, indent) {
  if (Array.isArray(v)) {
    const items = v.filter((x) => x !== null && x !== undefined);
    if (!items.length) return "[]";
    const parts = items.map((x) => value(x, indent + "  "));
    const oneLine = "[" + parts.join(", ") + "]";
    if (oneLine.length <= 72 && !oneLine.includes("\n")) return oneLine;
    return "[\n" + parts.map((p) => indent + "  " + p + ",").join("\n") + "\n" + indent + "]";
  }
  if (isObj(v)) {
    const entries = Object.entries(v).filter(([, x]) => x !== null && x !== undefined);
    if (!entries.length) return "{}";
    return "{ " + entries.map(([k, x]) => key(k) + " = " + value(x, indent)).join(", ") + " }";
  }
  return scalar(v);
}

function body(obj, lines) {
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || v === undefined) continue;
    lines.push(key(k) + " = " + value(v, ""));
  }
}

export function toToml(def, header) {
  const lines = header ? header.split("\n").map((l) => "# " + l) : [];
  const plain = {};
  const tables = [];
  const arrays = [];
  for (const [k, v] of Object.entries(def)) {
    if (v === null || v === undefined) continue;
    if (isObj(v)) tables.push([k, v]);
    else if (Array.isArray(v) && v.length && v.every(isObj)) arrays.push([k, v]);
    else plain[k] = v;
  }
  body(plain, lines);
  for (const [k, v] of tables) {
    lines.push("", "[" + key(k) + "]");
    body(v, lines);
  }
  for (const [k, list] of arrays) {
    for (const item of list) {
      lines.push("", "[[" + key(k) + "]]");
      body(item, lines);
    }
  }
  return lines.join("\n") + "\n";
}

export function toJson(def) {
  return JSON.stringify(def, null, 2) + "\n";
}
