#!/usr/bin/env node
// Node `ws` client that runs a scripted matrix against an echo server and prints JSON results.
//
//   node ws_client.js URL [--deflate on|off] [--max-size BYTES] [--cases a,b,c] [--list]
//
// The server must echo every message with its type kept and echo the close frame (code and
// reason), like `python -m transports serve`. Each case runs on its own connection.
// Output (one JSON document on stdout):
//   {"url", "deflate", "results": [{"name", "ok", "error", "ms", "detail"}]}
// Exit status: 0 when every case passed, 1 otherwise, 2 on bad arguments.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const args = process.argv.slice(2);
let url = null;
let deflate = true;
let maxSize = 16 * 1024 * 1024;
let only = null;
let list = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--deflate') deflate = args[++i] !== 'off';
  else if (a === '--max-size') maxSize = parseInt(args[++i], 10);
  else if (a === '--cases') only = args[++i].split(',').filter(Boolean);
  else if (a === '--list') list = true;
  else if (!url) url = a;
  else { process.stderr.write(`unexpected argument ${a}\n`); process.exit(2); }
}

const CASE_TIMEOUT_MS = 20000;
const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, maxSize];
const CASES = new Map();

function sizeName(n) {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n >> 20}MiB`;
  return `${n}B`;
}

function open(extra = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: deflate ? { threshold: 0 } : false,
      maxPayload: 64 * 1024 * 1024,
      ...extra,
    });
    ws.inbox = [];
    ws.waiters = [];
    ws.closed = null;
    ws.on('message', (data, isBinary) => {
      const msg = { data, isBinary };
      if (ws.waiters.length) ws.waiters.shift().resolve(msg); else ws.inbox.push(msg);
    });
    ws.on('close', (code, reason) => {
      ws.closed = { code, reason: reason.toString() };
      for (const w of ws.waiters.splice(0)) w.reject(new Error(`closed ${code} ${reason}`));
    });
    ws.on('error', (err) => { ws.lastError = err; reject(err); });
    ws.once('open', () => resolve(ws));
  });
}

function recv(ws) {
  if (ws.inbox.length) return Promise.resolve(ws.inbox.shift());
  if (ws.closed) return Promise.reject(new Error(`closed ${ws.closed.code} ${ws.closed.reason}`));
  return new Promise((resolve, reject) => ws.waiters.push({ resolve, reject }));
}

function waitClose(ws) {
  if (ws.closed) return Promise.resolve(ws.closed);
  return new Promise((resolve) => ws.once('close', () => resolve(ws.closed)));
}

function send(ws, data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

function textOf(size) {
  // ASCII with some variety so that compression has work to do.
  const unit = 'The quick brown fox jumps over the lazy dog 0123456789. ';
  return unit.repeat(Math.ceil(size / unit.length) + 1).slice(0, size);
}

function binaryOf(size) {
  // Random bytes, every 4th one zeroed: all byte values occur, yet deflate never makes the
  // message larger, so a max-size message still fits a limit applied to compressed frames.
  const buf = crypto.randomBytes(size);
  for (let i = 0; i < size; i += 4) buf[i] = 0;
  return buf;
}

async function closeNormally(ws) {
  ws.close(1000, 'done');
  const c = await waitClose(ws);
  check(c.code === 1000, `close code ${c.code}`);
}

async function echo(data, binary) {
  const ws = await open();
  await send(ws, data, { binary });
  const msg = await recv(ws);
  check(msg.isBinary === binary, `echo type: binary=${msg.isBinary}`);
  const got = binary ? msg.data : msg.data.toString('utf8');
  if (binary) {
    check(Buffer.compare(got, data) === 0, `binary echo differs (${got.length} vs ${data.length} bytes)`);
  } else {
    check(got === data, `text echo differs (${got.length} vs ${data.length} chars)`);
  }
  await closeNormally(ws);
  return { bytes: binary ? data.length : Buffer.byteLength(data) };
}

for (const n of SIZES) {
  CASES.set(`text_${sizeName(n)}`, () => echo(textOf(n), false));
  CASES.set(`binary_${sizeName(n)}`, () => echo(binaryOf(n), true));
}
CASES.set('binary_compressible_1MiB', () => echo(Buffer.alloc(1 << 20, 0x61), true));
CASES.set('text_unicode', () => echo('héllo wörld € 😀 — こんにちは '.repeat(100), false));

async function fragmented(binary, parts) {
  const ws = await open();
  for (let i = 0; i < parts.length; i++) {
    await send(ws, parts[i], { binary, fin: i === parts.length - 1 });
  }
  const whole = Buffer.concat(parts.map((p) => Buffer.from(p)));
  const msg = await recv(ws);
  check(msg.isBinary === binary, `echo type: binary=${msg.isBinary}`);
  check(Buffer.compare(msg.data, whole) === 0, `fragmented echo differs (${msg.data.length} vs ${whole.length} bytes)`);
  await closeNormally(ws);
  return { fragments: parts.length, bytes: whole.length };
}

CASES.set('fragmented_text', () => fragmented(false, ['Hello', ', ', 'fragmented', ' ', 'world']));
CASES.set('fragmented_text_split_utf8', () => {
  // "é" is two bytes: cut each fragment inside a character; only the whole message is valid.
  const whole = Buffer.from('é'.repeat(1000));
  const parts = [];
  for (let off = 0; off < whole.length; off += 333) parts.push(whole.subarray(off, off + 333));
  return fragmented(false, parts);
});
CASES.set('fragmented_binary', () => {
  const whole = crypto.randomBytes(300000);
  const parts = [];
  for (let off = 0; off < whole.length; off += 65537) parts.push(whole.subarray(off, off + 65537));
  return fragmented(true, parts);
});
CASES.set('fragmented_with_empty_fragments', () => fragmented(true, [Buffer.alloc(0), Buffer.from('abc'), Buffer.alloc(0)]));
CASES.set('fragmented_interleaved_ping', async () => {
  const ws = await open();
  let pongs = 0;
  ws.on('pong', () => { pongs++; });
  await send(ws, 'part1-', { binary: false, fin: false });
  ws.ping('mid');
  await send(ws, 'part2', { binary: false, fin: true });
  const msg = await recv(ws);
  check(!msg.isBinary && msg.data.toString() === 'part1-part2', `got ${msg.data}`);
  const deadline = Date.now() + 5000;
  while (pongs === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  check(pongs === 1, `pongs ${pongs}`);
  await closeNormally(ws);
});

async function ping(payload) {
  const ws = await open();
  const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d)));
  const t0 = process.hrtime.bigint();
  ws.ping(payload);
  const got = await pong;
  const rtt = Number(process.hrtime.bigint() - t0) / 1e6;
  check(Buffer.compare(got, Buffer.from(payload)) === 0, `pong payload ${got.toString('hex')}`);
  // The connection still carries data afterwards.
  await send(ws, 'after ping', { binary: false });
  const msg = await recv(ws);
  check(msg.data.toString() === 'after ping', 'echo after ping');
  await closeNormally(ws);
  return { rtt_ms: rtt };
}
CASES.set('ping_empty', () => ping(''));
CASES.set('ping_payload', () => ping('interop ping'));
CASES.set('ping_125B', () => ping('p'.repeat(125)));

async function closeWith(code, reason) {
  const ws = await open();
  await send(ws, 'x', { binary: false });
  await recv(ws);
  if (code === undefined) ws.close(); else ws.close(code, reason);
  const c = await waitClose(ws);
  const wantCode = code === undefined ? 1005 : code;
  check(c.code === wantCode, `close code ${c.code}, want ${wantCode}`);
  // Echoing the reason is optional (RFC 6455 5.5.1): accept the same reason or none.
  if (reason !== undefined) check(c.reason === reason || c.reason === '', `close reason ${JSON.stringify(c.reason)}, want ${JSON.stringify(reason)} or ""`);
  return c;
}
CASES.set('close_1000', () => closeWith(1000, ''));
CASES.set('close_1000_reason', () => closeWith(1000, 'bye'));
CASES.set('close_1001_reason', () => closeWith(1001, 'going away'));
CASES.set('close_3000_reason', () => closeWith(3000, 'app code'));
CASES.set('close_4999_unicode_reason', () => closeWith(4999, 'adiós €'));
CASES.set('close_123B_reason', () => closeWith(4000, 'r'.repeat(123)));
CASES.set('close_no_status', () => closeWith(undefined, undefined));

CASES.set('too_big_1009', async () => {
  const ws = await open();
  ws.send(Buffer.alloc(maxSize + 1), { binary: true }, () => {});
  const c = await waitClose(ws);
  check(c.code === 1009, `close code ${c.code}, want 1009`);
  return c;
});
CASES.set('many_small_messages', async () => {
  const ws = await open();
  const n = 1000;
  for (let i = 0; i < n; i++) ws.send(`m${i}`);
  for (let i = 0; i < n; i++) {
    const msg = await recv(ws);
    check(msg.data.toString() === `m${i}`, `message ${i}: ${msg.data}`);
  }
  await closeNormally(ws);
  return { messages: n };
});
CASES.set('compression_negotiated', async () => {
  const ws = await open();
  const ext = ws.extensions;
  if (deflate) check(ext.includes('permessage-deflate'), `extensions ${JSON.stringify(ext)}`);
  else check(!ext.includes('permessage-deflate'), `extensions ${JSON.stringify(ext)}`);
  await closeNormally(ws);
  return { extensions: ext };
});

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timeout after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

async function main() {
  if (list) { process.stdout.write(JSON.stringify([...CASES.keys()]) + '\n'); return 0; }
  if (!url) { process.stderr.write('usage: ws_client.js URL [--deflate on|off] [--cases a,b]\n'); return 2; }
  const names = only || [...CASES.keys()];
  const results = [];
  for (const name of names) {
    const fn = CASES.get(name);
    const t0 = Date.now();
    if (!fn) { results.push({ name, ok: false, error: 'unknown case', ms: 0 }); continue; }
    try {
      const detail = await withTimeout(fn(), CASE_TIMEOUT_MS, name);
      results.push({ name, ok: true, error: null, ms: Date.now() - t0, detail: detail || null });
    } catch (err) {
      results.push({ name, ok: false, error: String(err && err.message || err), ms: Date.now() - t0 });
    }
  }
  process.stdout.write(JSON.stringify({ url, deflate, results }, null, 1) + '\n');
  return results.every((r) => r.ok) ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => { process.stderr.write(String(err.stack) + '\n'); process.exit(3); });
