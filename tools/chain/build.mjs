#!/usr/bin/env node
// Compiles src/vcgate/chain/RevocationRegistry.sol with the pinned npm solc and writes the
// committed artifact src/vcgate/chain/artifacts/RevocationRegistry.json.
//
//   node tools/chain/build.mjs           rebuild the artifact
//   node tools/chain/build.mjs --check   exit 1 if the committed artifact differs from a fresh build
//
// Every input that changes the bytecode is pinned here or in package-lock.json: the solc
// version, evmVersion (solcjs would otherwise default to its newest EVM, which not every node
// accepts), the optimizer, and the OpenZeppelin sources. Warnings fail the build, so the
// source stays warning-free.

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
const CHAIN_DIR = join(ROOT, "src", "vcgate", "chain");
const SOURCE_NAME = "RevocationRegistry.sol";
const CONTRACT_NAME = "EthereumRevocationRegistry";
const ARTIFACT = join(CHAIN_DIR, "artifacts", "RevocationRegistry.json");

const SOLC_VERSION = "0.8.30";
const EVM_VERSION = "cancun";
const OPTIMIZER = { enabled: true, runs: 200 };
const OZ_PACKAGE = "@openzeppelin/contracts";

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

function findImports(path) {
  // Only the pinned OpenZeppelin package may be imported; anything else is a mistake.
  if (!path.startsWith(OZ_PACKAGE + "/")) {
    return { error: `import outside ${OZ_PACKAGE}: ${path}` };
  }
  try {
    return { contents: readFileSync(join(HERE, "node_modules", path), "utf8") };
  } catch (err) {
    return { error: `${path}: ${err.message} (run: npm ci --prefix tools/chain)` };
  }
}

function build() {
  const actual = solc.version();
  if (!actual.startsWith(SOLC_VERSION + "+")) {
    throw new Error(`solc ${actual} installed, ${SOLC_VERSION} pinned (run: npm ci --prefix tools/chain)`);
  }
  const source = readFileSync(join(CHAIN_DIR, SOURCE_NAME), "utf8");
  const input = {
    language: "Solidity",
    sources: { [SOURCE_NAME]: { content: source } },
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      viaIR: false,
      outputSelection: {
        [SOURCE_NAME]: { [CONTRACT_NAME]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const problems = output.errors ?? [];
  if (problems.length) {
    for (const p of problems) console.error(p.formattedMessage ?? p.message);
    throw new Error(`solc reported ${problems.length} error(s)/warning(s)`);
  }
  const contract = output.contracts[SOURCE_NAME][CONTRACT_NAME];
  const ozVersion = JSON.parse(readFileSync(join(HERE, "node_modules", OZ_PACKAGE, "package.json"), "utf8")).version;
  return {
    contractName: CONTRACT_NAME,
    sourceName: SOURCE_NAME,
    abi: contract.abi,
    bytecode: "0x" + contract.evm.bytecode.object,
    deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
    compiler: { version: actual, evmVersion: EVM_VERSION, optimizer: OPTIMIZER, viaIR: false },
    dependencies: { [OZ_PACKAGE]: ozVersion },
    sourceSha256: sha256(source),
  };
}

function main() {
  const check = process.argv.includes("--check");
  const text = JSON.stringify(build(), null, 2) + "\n";
  if (check) {
    let committed = "";
    try {
      committed = readFileSync(ARTIFACT, "utf8");
    } catch {
      // a missing artifact is a mismatch like any other
    }
    if (committed !== text) {
      console.error(`${ARTIFACT} is stale: rebuild with "node tools/chain/build.mjs" and commit it`);
      process.exit(1);
    }
    console.log(`${ARTIFACT} matches a fresh build`);
    return;
  }
  mkdirSync(dirname(ARTIFACT), { recursive: true });
  writeFileSync(ARTIFACT, text);
  console.log(`wrote ${ARTIFACT} (sha256 ${sha256(text).slice(0, 16)}…)`);
}

try {
  main();
} catch (err) {
  console.error(`build failed: ${err.message}`);
  process.exit(2);
}
