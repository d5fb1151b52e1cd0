// The oracle: Hugging Face tokenizers (npm "tokenizers", the Rust library's native binding) encodes and decodes
// every document of a corpus. Output: one JSON line per document:
//   {"ids": [...without special tokens], "ids_special": [...with], "decoded": decode(ids_special, false),
//    "decoded_skip": decode(ids_special, true)}
// {"hex": ...} documents are bytes: they are decoded as UTF-8 the way Node does (WHATWG, U+FFFD per maximal
// ill-formed subsequence) before encoding.
// Usage: node hf_tokenize.js TOKENIZER_JSON CORPUS.jsonl OUT.jsonl
'use strict';
const fs = require('fs');
const {Tokenizer} = require('tokenizers');

(async () => {
  const [tokPath, corpusPath, outPath] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const docs = fs.readFileSync(corpusPath, 'utf8').split('\n').filter(Boolean).map((l) => {
    const j = JSON.parse(l);
    return j.hex !== undefined ? Buffer.from(j.hex, 'hex').toString('utf8') : j.text;
  });
  const lines = [];
  const batch = 256;
  for (let i = 0; i < docs.length; i += batch) {
    const part = docs.slice(i, i + batch);
    const plain = await tok.encodeBatch(part, {addSpecialTokens: false});
    const special = await tok.encodeBatch(part, {addSpecialTokens: true});
    for (let k = 0; k < part.length; k++) {
      const ids = special[k].getIds();
      lines.push(JSON.stringify({
        ids: plain[k].getIds(),
        ids_special: ids,
        decoded: await tok.decode(ids, false),
        decoded_skip: await tok.decode(ids, true),
      }));
    }
  }
  fs.writeFileSync(outPath, lines.join('\n') + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
