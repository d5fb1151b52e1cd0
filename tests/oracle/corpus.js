// Builds the tokenizer conformance corpus: one {"text": ...} (or {"hex": ...} for byte strings that are not valid
// UTF-8) per line. Sources: every string in the datasets of the shared data folder, the llama.cpp tokenizer test
// vectors, the hand-written multilingual / adversarial lines in tests/data/tokenizer_adversarial.txt, and
// generated edge cases (digit runs, whitespace runs, long words, invalid UTF-8).
// Usage: node corpus.js DATA_DIR OUT.jsonl
'use strict';
const fs = require('fs');
const path = require('path');

const [dataDir, outPath] = process.argv.slice(2);
if (!dataDir || !outPath) {
  console.error('usage: node corpus.js DATA_DIR OUT.jsonl');
  process.exit(2);
}
const seen = new Set();
const out = [];
function add(text) {
  if (typeof text !== 'string' || seen.has(text)) return;
  seen.add(text);
  out.push(JSON.stringify({text}));
}
function addHex(buf) {
  const hex = Buffer.from(buf).toString('hex');
  if (seen.has('hex:' + hex)) return;
  seen.add('hex:' + hex);
  out.push(JSON.stringify({hex}));
}
function walk(value) {
  if (typeof value === 'string') add(value);
  else if (Array.isArray(value)) value.forEach(walk);
  else if (value && typeof value === 'object') Object.values(value).forEach(walk);
}

// 1. Datasets: every string leaf, in file order.
const datasets = path.join(dataDir, 'datasets');
if (fs.existsSync(datasets)) {
  const files = [];
  (function list(dir) {
    for (const e of fs.readdirSync(dir, {withFileTypes: true}).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) list(p);
      else files.push(p);
    }
  })(datasets);
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    if (f.endsWith('.jsonl')) text.split('\n').filter(Boolean).forEach((l) => walk(JSON.parse(l)));
    else if (f.endsWith('.json')) walk(JSON.parse(text));
    else add(text);
  }
}

// 2. llama.cpp vectors (inputs only; their expected ids are checked separately).
const vec = path.join(dataDir, 'tokenizer_vectors', 'llama.cpp', 'ggml-vocab-llama-bpe.gguf.inp');
if (fs.existsSync(vec)) fs.readFileSync(vec, 'utf8').split('\n__ggml_vocab_test__\n').forEach(add);

// 3. Hand-written lines, with \uXXXX, \UXXXXXXXX, \n, \t, \r escapes.
const adversarial = path.join(__dirname, '..', 'data', 'tokenizer_adversarial.txt');
const unescape = (s) => s.replace(/\\U([0-9a-fA-F]{8})|\\u([0-9a-fA-F]{4})|\\([ntr])/g, (m, u8, u4, c) =>
  u8 ? String.fromCodePoint(parseInt(u8, 16)) : u4 ? String.fromCharCode(parseInt(u4, 16)) : {n: '\n', t: '\t', r: '\r'}[c]);
const lines = fs.readFileSync(adversarial, 'utf8').split('\n').filter((l) => l.length).map(unescape);
lines.forEach(add);
add(lines.join('\n'));  // all of them as one document

// 4. Generated edge cases.
for (let n = 1; n <= 40; n++) { add('7'.repeat(n)); add('x' + '0123456789'.repeat(5).slice(0, n) + 'y'); add(' ' + '9'.repeat(n)); }
for (const ws of [' ', '\t', '\n', '\r\n', ' \n', '\n ', '\t ', '\u3000', '\u00a0']) {
  for (const n of [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 64, 100, 257, 1000]) {
    add(ws.repeat(n)); add('a' + ws.repeat(n) + 'b'); add(ws.repeat(n) + 'word'); add('word' + ws.repeat(n));
  }
}
for (const n of [50, 95, 96, 97, 100, 200, 1000, 5000]) { add('a'.repeat(n)); add('ab'.repeat(n)); add('é'.repeat(n)); add('日本'.repeat(n)); }
add('supercalifragilisticexpialidocious'.repeat(40));
add('Z'.repeat(3) + 'z'.repeat(200) + '!'.repeat(100));
add(''); add(' '); add('\n'); add('a'); add('\u0000'); add('\uFFFD'); add('\uFEFFBOM at start');
// Invalid UTF-8 byte strings: lone continuation bytes, truncated sequences, overlongs, surrogates, > U+10FFFF.
const bad = [[0x80], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80],
  [0xFF], [0xFE, 0xFF], [0xC3], [0xE3, 0x81], [0xF0, 0x9F, 0x98], [0xC3, 0x28], [0xE2, 0x28, 0xA1], [0xF0, 0x28, 0x8C, 0xBC]];
for (const b of bad) {
  addHex(b);
  addHex([...Buffer.from('Hello '), ...b, ...Buffer.from(' world')]);
  addHex([...Buffer.from('日本'), ...b, ...b, ...Buffer.from('語')]);
}

fs.writeFileSync(outPath, out.join('\n') + '\n');
console.error(`corpus: ${out.length} documents, ${fs.statSync(outPath).size} bytes`);
