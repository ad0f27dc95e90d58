#!/usr/bin/env node
// Echo server on the Node `ws` library, used as a peer by the interop tests.
//
//   node ws_echo_server.js PORT [on|off] [MAX_PAYLOAD]
//   (permessage-deflate on or off, default on; largest message accepted, default 16 MiB: larger
//   ones close the connection with 1009)
//
// Listens on 127.0.0.1 only. Prints "listening on ws://127.0.0.1:PORT" once ready (PORT 0 picks a
// free port and prints it). Every message is echoed with its type kept (text as text, binary as
// binary). A text message starting with "__cmd__ " is a command instead of data:
//   __cmd__ info                    -> text JSON {extensions, protocol, path, lastPing}
//   __cmd__ ping PAYLOAD            -> the server pings with PAYLOAD; on the pong it sends
//                                      text "pong PAYLOAD"
//   __cmd__ close CODE [REASON...]  -> the server closes with CODE and REASON
//   __cmd__ frag text|binary N SIZE -> the server sends one SIZE-byte message in N fragments
//                                      (text: "é" repeated, fragments cut inside the 2-byte chars;
//                                      binary: byte i is i % 251)
// The process exits on SIGTERM/SIGINT, or when its stdin closes (so it dies with its parent).
'use strict';

const { WebSocketServer } = require('ws');

const port = parseInt(process.argv[2] || '0', 10);
const deflate = (process.argv[3] || 'on') !== 'off';
const maxPayload = parseInt(process.argv[4] || String(16 * 1024 * 1024), 10);

function pattern(kind, size) {
  if (kind === 'text') {
    const buf = Buffer.alloc(size);
    for (let i = 0; i < size; i += 2) {
      if (i + 1 < size) { buf[i] = 0xc3; buf[i + 1] = 0xa9; } else { buf[i] = 0x61; }
    }
    return buf;
  }
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = i % 251;
  return buf;
}

function sendFragments(ws, kind, n, size) {
  const data = pattern(kind, size);
  const step = Math.max(1, Math.ceil(size / n) | 1); // odd step: cuts inside "é"
  const parts = [];
  for (let off = 0; off < size; off += step) parts.push(data.subarray(off, off + step));
  while (parts.length < n) parts.push(Buffer.alloc(0));
  parts.forEach((part, i) => {
    ws.send(part, { binary: kind !== 'text', fin: i === parts.length - 1 });
  });
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});

wss.on('connection', (ws, req) => {
  let lastPing = null;
  ws.on('ping', (data) => { lastPing = data.toString('latin1'); });
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length >= 8 && data.subarray(0, 8).toString() === '__cmd__ ') {
      const words = data.toString().split(' ');
      const cmd = words[1];
      if (cmd === 'info') {
        ws.send(JSON.stringify({
          extensions: ws.extensions, protocol: ws.protocol, path: req.url, lastPing,
        }));
      } else if (cmd === 'ping') {
        const payload = words.slice(2).join(' ');
        ws.once('pong', (pong) => ws.send('pong ' + pong.toString()));
        ws.ping(payload);
      } else if (cmd === 'close') {
        ws.close(parseInt(words[2], 10), words.slice(3).join(' '));
      } else if (cmd === 'frag') {
        sendFragments(ws, words[2], parseInt(words[3], 10), parseInt(words[4], 10));
      } else {
        ws.send('error unknown command ' + cmd);
      }
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});

wss.on('listening', () => {
  process.stdout.write(`listening on ws://127.0.0.1:${wss.address().port}\n`);
});
wss.on('error', (err) => {
  process.stderr.write(`ws_echo_server: ${err.message}\n`);
  process.exit(1);
});

function stop() {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', () => {});
process.stdin.resume();
