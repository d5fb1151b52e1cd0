// The Hugging Face side of bench/tokenizer.sh: load time and encode throughput of the npm "tokenizers" binding
// (Rust) on a JSON-lines corpus. Single-thread numbers come from encodeBatch with RAYON_NUM_THREADS=1, which runs
// the Rust encoder with one worker and no per-call JavaScript overhead (calling encode() per document is 3x
// slower still). Usage: node tokenizer_hf.js TOKENIZER_JSON CORPUS.jsonl
'use strict';
const fs = require('fs');
const {Tokenizer} = require('tokenizers');

(async () => {
  const [tokPath, corpusPath] = process.argv.slice(2);
  const docs = fs.readFileSync(corpusPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
  const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d), 0);
  let t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(tokPath);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  let rounds = 0;
  t0 = process.hrtime.bigint();
  let elapsed = 0;
  do {
    for (let i = 0; i < docs.length; i += 2048) await tok.encodeBatch(docs.slice(i, i + 2048), {addSpecialTokens: false});
    rounds++;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (elapsed < 2);
  console.log(JSON.stringify({load_ms: loadMs, MBps: (bytes * rounds) / 1e6 / elapsed, threads: process.env.RAYON_NUM_THREADS}));
})();
