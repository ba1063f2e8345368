// Bundle src/chat.js and its npm dependencies into dist/patchbay.js. The banner records a hash
// of the sources and the lock file, so `python frontend/bundle.py --check` can tell a stale
// bundle without Node (the bundle is committed: `make run` needs no Node).
import { build } from "esbuild";
import { sourceHash } from "./source-hash.mjs";

await build({
  entryPoints: ["src/chat.js"],
  outfile: "dist/patchbay.js",
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  legalComments: "eof",
  banner: { js: `/* patchbay bundle, sources ${sourceHash()} */` },
  logLevel: "warning",
});
