// The same digest as bundle.py's source_hash(): sha256 over each input's name and bytes.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";

export function sourceHash() {
  const names = readdirSync("src").filter((name) => name.endsWith(".js")).sort().map((name) => `src/${name}`);
  const hash = createHash("sha256");
  for (const name of [...names, "package-lock.json"]) {
    hash.update(name);
    hash.update("\0");
    hash.update(readFileSync(name));
    hash.update("\0");
  }
  return hash.digest("hex");
}
