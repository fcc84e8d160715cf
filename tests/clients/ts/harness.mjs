// Shared harness for the TypeScript SDK client tests: starts the conformance
// fixture and a Gatehouse gateway fronting server-everything (stdio, prefix
// "ev_") and the fixture (Streamable HTTP), and loads @modelcontextprotocol/sdk
// from the repository's .tools/npm (installed by scripts/client-tests).
//
// Overrides: GATEHOUSE_BIN, CONFORMANCE_FIXTURE_BIN, NODE_BIN,
// SERVER_EVERYTHING_JS, GATEHOUSE_NPM_DIR (a node_modules folder),
// CARGO_TARGET_DIR.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../../..");
const TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(homedir(), ".cache", "gatehouse-target");
const GATEHOUSE_BIN = process.env.GATEHOUSE_BIN || path.join(TARGET_DIR, "debug", "gatehouse");
const FIXTURE_BIN = process.env.CONFORMANCE_FIXTURE_BIN || path.join(TARGET_DIR, "debug", "conformance-fixture");
const NODE_BIN = process.env.NODE_BIN || process.execPath;
const NODE_MODULES = process.env.GATEHOUSE_NPM_DIR || path.join(ROOT, ".tools", "npm", "node_modules");
const SERVER_EVERYTHING_JS =
  process.env.SERVER_EVERYTHING_JS ||
  path.join(NODE_MODULES, "@modelcontextprotocol", "server-everything", "dist", "index.js");
const STARTUP_TIMEOUT_MS = 30_000;

const sdkDir = path.join(NODE_MODULES, "@modelcontextprotocol", "sdk", "dist", "esm");
const load = (rel) => import(pathToFileURL(path.join(sdkDir, rel)).href);

/** Loads the SDK modules the tests use. */
export async function loadSdk() {
  for (const p of [sdkDir, SERVER_EVERYTHING_JS]) {
    if (!existsSync(p)) throw new Error(`missing ${p}: run scripts/client-tests to install it`);
  }
  const [client, http, types] = await Promise.all([
    load("client/index.js"),
    load("client/streamableHttp.js"),
    load("types.js"),
  ]);
  return { Client: client.Client, StreamableHTTPClientTransport: http.StreamableHTTPClientTransport, types };
}

/** [ppid, state] of a process from /proc, or null. */
function procStat(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(")").pop().trim().split(/\s+/);
    return [Number(fields[1]), fields[0]];
  } catch {
    return null;
  }
}

const alive = (pid) => {
  const st = procStat(pid);
  return st !== null && st[1] !== "Z";
};

/** All descendants of `pid` (Linux /proc; empty elsewhere). */
function descendantsOf(pid) {
  let pids;
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
  const parent = new Map(pids.map((p) => [p, procStat(p)?.[0]]));
  const found = [];
  const todo = [pid];
  while (todo.length) {
    const cur = todo.pop();
    for (const [p, pp] of parent) {
      if (pp === cur && !found.includes(p)) {
        found.push(p);
        todo.push(p);
      }
    }
  }
  return found;
}

/** Spawns `argv` in its own process group and resolves once stdout's first line starts with `prefix`. */
function start(name, argv, workDir, prefix) {
  for (const bin of [argv[0]]) {
    if (!existsSync(bin)) throw new Error(`missing ${bin}: build it with cargo (scripts/client-tests does)`);
  }
  const stderrPath = path.join(workDir, `${name}.stderr.log`);
  const errFd = openSync(stderrPath, "w");
  const child = spawn(argv[0], argv.slice(1), {
    cwd: workDir,
    stdio: ["ignore", "pipe", errFd],
    detached: true,
  });
  closeSync(errFd);
  const proc = {
    name,
    child,
    stderrPath,
    stderrTail(n = 30) {
      try {
        return readFileSync(stderrPath, "utf8").split("\n").slice(-n).join("\n");
      } catch {
        return "";
      }
    },
    async stop() {
      const running = child.exitCode === null && child.signalCode === null;
      const descendants = running ? descendantsOf(child.pid) : [];
      if (running) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      // The group id is the child's pid (detached): only processes we spawned.
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // group already empty
      }
      // Descendants in groups of their own (stdio members) must not outlive the test either.
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && descendants.some(alive)) await new Promise((r) => setTimeout(r, 100));
      for (const pid of descendants.filter(alive)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    },
  };
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      proc.stop().finally(() => reject(new Error(`${name}: ${why}\n${proc.stderrTail()}`)));
    };
    const timer = setTimeout(() => fail(`no '${prefix}' line within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
    child.once("error", (err) => fail(`spawn failed: ${err.message}`));
    child.once("exit", (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
    rl.once("line", (line) => {
      clearTimeout(timer);
      if (!line.startsWith(prefix)) return fail(`unexpected first line ${JSON.stringify(line)}`);
      done = true;
      proc.firstLine = line.trim();
      // Keep draining stdout so the process never blocks on a full pipe.
      child.stdout.resume();
      resolve(proc);
    });
  });
}

/**
 * Starts the fixture and a gateway in front of it and server-everything.
 * Returns { url, fixtureUrl, gateway, fixture, stop() }.
 */
export async function startStack() {
  const workDir = mkdtempSync(path.join(tmpdir(), "gatehouse-ts-"));
  const fixture = await start("conformance-fixture", [FIXTURE_BIN, "--listen", "127.0.0.1:0", "--era", "modern"], workDir, "listening on ");
  const fixtureUrl = fixture.firstLine.slice("listening on ".length).trim();
  let gateway;
  try {
    const config = {
      servers: [
        { name: "everything", command: NODE_BIN, args: [SERVER_EVERYTHING_JS, "stdio"] },
        { name: "fixture", url: fixtureUrl },
      ],
      virtual_servers: [
        {
          name: "default",
          path: "/mcp",
          include: [{ server: "everything", prefix: "ev_" }, { server: "fixture" }],
        },
      ],
    };
    const configPath = path.join(workDir, "gatehouse.yaml");
    writeFileSync(configPath, JSON.stringify(config, null, 2)); // JSON is valid YAML
    const dataDir = path.join(workDir, "data");
    mkdirSync(dataDir, { recursive: true });
    gateway = await start(
      "gatehouse",
      [GATEHOUSE_BIN, "up", "--config", configPath, "--listen", "127.0.0.1:0", "--data-dir", dataDir],
      workDir,
      "Gatehouse ",
    );
  } catch (err) {
    await fixture.stop();
    throw err;
  }
  const m = / listening on (\S+)/.exec(gateway.firstLine);
  if (!m) {
    await gateway.stop();
    await fixture.stop();
    throw new Error(`cannot parse the gateway address from ${JSON.stringify(gateway.firstLine)}`);
  }
  const url = `${m[1].replace(/\/$/, "")}/mcp`;
  return {
    url,
    fixtureUrl,
    gateway,
    fixture,
    async stop() {
      await gateway.stop();
      await fixture.stop();
    },
  };
}
