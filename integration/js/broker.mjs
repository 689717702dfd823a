// Broker process harness for the node tests (mirror of integration/conftest.py).
//
// Starts the real `sluice serve` binary ($SLUICE_BIN, default
// <repo>/target/debug/sluice) on 127.0.0.1 with fresh ports and a fresh data
// dir, waits (bounded) for the Kafka port to accept AND a line containing
// "ready" on stderr, stops it with SIGTERM by PID and expects exit code 0.
// Every broker still alive when this process exits is SIGKILLed by PID.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const START_TIMEOUT_MS = Number(process.env.SLUICE_START_TIMEOUT ?? 30) * 1000;
export const STOP_TIMEOUT_MS = Number(process.env.SLUICE_STOP_TIMEOUT ?? 20) * 1000;
const READY_RE = /\bready\b/i;

export function sluiceBin() {
  return process.env.SLUICE_BIN || path.join(REPO_ROOT, 'target', 'debug', 'sluice');
}

const live = new Set();
function killAll() {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(128 + os.constants.signals[sig]);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function portAccepts(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export class Broker {
  constructor({ sets = {}, name = 'sluice-js' } = {}) {
    this.name = name;
    this.sets = sets;
    this.workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-js-'));
    this.dataDir = path.join(this.workdir, 'data');
    fs.mkdirSync(this.dataDir, { recursive: true });
    this.stderrPath = path.join(this.workdir, 'sluice-stderr.log');
    this.stdoutPath = path.join(this.workdir, 'sluice-stdout.log');
    fs.writeFileSync(this.stderrPath, '');
    this.child = null;
    this.exit = null; // { code, signal } of the last exited process
  }

  get host() {
    return '127.0.0.1';
  }

  get bootstrap() {
    return `${this.host}:${this.port}`;
  }

  get admin() {
    return `${this.host}:${this.adminPort}`;
  }

  stderrTail(bytes = 64 * 1024) {
    try {
      const buf = fs.readFileSync(this.stderrPath);
      return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
    } catch {
      return '<no stderr captured>';
    }
  }

  isRunning() {
    return this.child !== null && this.exit === null;
  }

  async start() {
    const bin = sluiceBin();
    if (!fs.existsSync(bin)) {
      throw new Error(`sluice binary not found at ${bin} (set SLUICE_BIN or run \`cargo build --bin sluice\`)`);
    }
    if (this.port === undefined) {
      this.port = await freePort();
      do {
        this.adminPort = await freePort();
      } while (this.adminPort === this.port);
    }
    const args = [
      'serve',
      '--listen', this.bootstrap,
      '--data-dir', this.dataDir,
      '--admin-listen', this.admin,
    ];
    for (const [k, v] of Object.entries(this.sets)) args.push('--set', `${k}=${v}`);

    fs.appendFileSync(this.stderrPath, `\n===== [sluice-it-js] start: ${bin} ${args.join(' ')} =====\n`);
    const offset = fs.statSync(this.stderrPath).size;
    const errFd = fs.openSync(this.stderrPath, 'a');
    const outFd = fs.openSync(this.stdoutPath, 'a');
    this.exit = null;
    const child = spawn(bin, args, {
      stdio: ['ignore', outFd, errFd],
      cwd: this.workdir,
      env: { RUST_BACKTRACE: '1', NO_COLOR: '1', ...process.env },
    });
    fs.closeSync(errFd);
    fs.closeSync(outFd);
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
      child.once('error', (err) => {
        live.delete(child);
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
    });

    const deadline = Date.now() + START_TIMEOUT_MS;
    let portOk = false;
    for (;;) {
      if (this.exit !== null) {
        throw new Error(
          `${this.name}: exited early during startup (${JSON.stringify(this.exit)}); stderr:\n${this.stderrTail()}`,
        );
      }
      if (!portOk) portOk = await portAccepts(this.port);
      if (portOk) {
        const since = fs.readFileSync(this.stderrPath).subarray(offset).toString('utf8');
        if (READY_RE.test(since)) return this;
      }
      if (Date.now() >= deadline) {
        const state = portOk ? "port accepts but no 'ready' line on stderr" : 'port never accepted';
        this.#killNow();
        throw new Error(`${this.name}: not ready within ${START_TIMEOUT_MS}ms (${state}); stderr:\n${this.stderrTail()}`);
      }
      await sleep(50);
    }
  }

  #killNow() {
    if (this.isRunning()) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }

  async #waitExit(timeoutMs) {
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    const res = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    return res;
  }

  /** SIGTERM by PID, bounded wait, expect exit code 0. Idempotent. */
  async stop() {
    if (!this.child || this.exit !== null) return this.exit;
    fs.appendFileSync(this.stderrPath, '\n===== [sluice-it-js] SIGTERM =====\n');
    process.kill(this.child.pid, 'SIGTERM');
    const res = await this.#waitExit(STOP_TIMEOUT_MS);
    if (res === null) {
      this.#killNow();
      await this.#waitExit(STOP_TIMEOUT_MS);
      throw new Error(`${this.name}: did not exit within ${STOP_TIMEOUT_MS}ms of SIGTERM; stderr:\n${this.stderrTail()}`);
    }
    if (res.code !== 0) {
      throw new Error(`${this.name}: exit after SIGTERM was ${JSON.stringify(res)}, expected code 0; stderr:\n${this.stderrTail()}`);
    }
    return res;
  }

  /** SIGKILL by PID (crash simulation), bounded wait. */
  async kill() {
    if (!this.isRunning()) throw new Error(`${this.name}: kill() but not running`);
    process.kill(this.child.pid, 'SIGKILL');
    const res = await this.#waitExit(STOP_TIMEOUT_MS);
    if (res === null) throw new Error(`${this.name}: still alive after SIGKILL`);
    return res;
  }

  async restart({ clean = true } = {}) {
    if (clean) await this.stop();
    else await this.kill();
    await this.start();
    return this;
  }
}

/**
 * Run `body(broker)` against a fresh broker; always stop it (SIGTERM, exit 0).
 * A body failure wins over a stop failure; either way the broker's stderr tail
 * is attached to the error.
 */
export async function withBroker(opts, body) {
  const broker = new Broker(opts);
  let bodyError = null;
  try {
    await broker.start();
    await body(broker);
  } catch (e) {
    bodyError = e;
  }
  let stopError = null;
  try {
    await broker.stop();
  } catch (e) {
    stopError = e;
  }
  if (bodyError) {
    if (stopError) bodyError.message += `\n(also: ${stopError.message.split('\n')[0]})`;
    if (!String(bodyError.message).includes('stderr:')) {
      bodyError.message += `\n--- sluice stderr (${broker.stderrPath}) ---\n${broker.stderrTail()}`;
    }
    throw bodyError;
  }
  if (stopError) throw stopError;
  // Passed: drop the scratch dir (kept on failure for inspection).
  fs.rmSync(broker.workdir, { recursive: true, force: true });
}

/** Locate kcat; returns null (caller skips) only if SLUICE_ALLOW_MISSING_PEERS=1. */
export function findKcat() {
  const res = spawnSync('kcat', ['-V'], { encoding: 'utf8', timeout: 10_000 });
  if (!res.error && res.status === 0) return 'kcat';
  if (process.env.SLUICE_ALLOW_MISSING_PEERS === '1') return null;
  throw new Error('`kcat` not found on PATH (apt-get install -y kcat); set SLUICE_ALLOW_MISSING_PEERS=1 to skip instead');
}

/** Run kcat (bounded); throws on non-zero exit. Returns stdout. */
export function kcat(args, { input, timeoutMs = 45_000 } = {}) {
  const res = spawnSync('kcat', args, { input, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (res.error) throw new Error(`kcat ${args.join(' ')}: ${res.error.message}\nstderr: ${res.stderr}`);
  if (res.status !== 0) {
    throw new Error(`kcat ${args.join(' ')} exited ${res.status}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`);
  }
  return res.stdout;
}
