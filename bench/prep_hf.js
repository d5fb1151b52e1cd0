// The Hugging Face side of bench/prep.sh: the same data preparation as `llmft prep` built from Hugging Face's own
// libraries (npm "tokenizers" 0.23, the Rust library's binding, and @huggingface/jinja), the way Python trainers do
// it: read the JSON records, render each one through its template, tokenize it with offsets and mark the trained
// tokens (the response for Alpaca; each assistant turn for conversations, located by rendering the conversation up
// to that turn with and without it, as llmft does). No packing or shard writing (llmft's time excludes them too).
//
//   node prep_hf.js FORMAT TOKENIZER_DIR WORKERS FILE...      FORMAT: alpaca | sharegpt
// Prints {"records", "bytes", "seconds", "records_per_s", "MBps", "tokens"}; WORKERS worker threads split the
// records (run it with RAYON_NUM_THREADS=1 so that each encodes on one thread).
'use strict';
const fs = require('fs');
const path = require('path');
const {Worker, isMainThread, parentPort, workerData} = require('worker_threads');

const kAlpacaNoInput = 'Below is an instruction that describes a task. Write a response that appropriately ' +
  'completes the request.\n\n### Instruction:\n';
const kAlpacaInput = 'Below is an instruction that describes a task, paired with an input that provides further ' +
  'context. Write a response that appropriately completes the request.\n\n### Instruction:\n';

async function prepare({format, tokDir, records}) {
  const t0 = process.hrtime.bigint();
  const {Tokenizer} = require('tokenizers');
  const {Template} = require('@huggingface/jinja');
  const tok = Tokenizer.fromFile(path.join(tokDir, 'tokenizer.json'));
  const cfg = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8'));
  const name = (t) => (typeof t === 'object' && t !== null ? t.content : t) || '';
  const template = format === 'sharegpt' ? new Template(cfg.chat_template) : null;
  const eos = name(cfg.eos_token);
  const roles = {human: 'user', gpt: 'assistant', system: 'system'};
  const render = (messages, gen) => template.render({messages, add_generation_prompt: gen,
    bos_token: name(cfg.bos_token), eos_token: eos});
  const loadSeconds = Number(process.hrtime.bigint() - t0) / 1e9;  // not counted: llmft's figure excludes it too
  let tokens = 0;
  // In chunks, as datasets.map(batched=True) does: render the chunk, encode it in one encodeBatch call (the fast
  // path of the binding; encode() per record is about 3x slower), then mark the trained tokens.
  for (let c = 0; c < records.length; c += 1000) {
    const texts = [], spansOf = [], specials = [];
    for (const rec of records.slice(c, c + 1000)) {
      let text;
      const spans = [];
      if (format === 'alpaca') {
        const prompt = (rec.input ? kAlpacaInput + rec.instruction + '\n\n### Input:\n' + rec.input
                                  : kAlpacaNoInput + rec.instruction) + '\n\n### Response:\n';
        if (!rec.output || !rec.output.trim()) continue;
        text = prompt + rec.output;
        spans.push([prompt.length, text.length]);
      } else {
        const messages = rec.conversations.map((t) => ({role: roles[t.from] || t.from, content: t.value}));
        text = render(messages, false);
        for (let k = 0; k < messages.length; k++) {
          if (messages[k].role !== 'assistant') continue;
          const before = render(messages.slice(0, k), true), upto = render(messages.slice(0, k + 1), false);
          spans.push([before.length, upto.length]);
        }
      }
      texts.push(text);
      spansOf.push(spans);
    }
    // Alpaca text gets BOS from the post-processor; rendered chats carry their own.
    const encodings = await tok.encodeBatch(texts, {addSpecialTokens: format === 'alpaca'});
    encodings.forEach((enc, j) => {
      const offsets = enc.getOffsets(), trained = new Uint8Array(offsets.length + 1);
      for (let i = 0; i < offsets.length; i++) {
        const [b, e] = offsets[i];
        for (const [s, t] of spansOf[j]) if (s < e && b < t) trained[i] = 1;
      }
      tokens += offsets.length + (format === 'alpaca' ? 1 : 0);  // Alpaca appends EOS
    });
  }
  return {tokens, loadSeconds};
}

if (isMainThread) {
  (async () => {
    const [format, tokDir, workersArg, ...files] = process.argv.slice(2);
    const workers = Number(workersArg);
    const t0 = process.hrtime.bigint();
    let records = [], bytes = 0;
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      bytes += Buffer.byteLength(text);
      const trimmed = text.trimStart();
      if (trimmed.startsWith('[')) records = records.concat(JSON.parse(text));
      else for (const line of text.split('\n')) if (line.trim()) records.push(JSON.parse(line));
    }
    let results;
    if (workers <= 1) {
      results = [await prepare({format, tokDir, records})];
    } else {
      const per = Math.ceil(records.length / workers);
      const parts = [];
      for (let w = 0; w < workers; w++) {
        parts.push(new Promise((resolve, reject) => {
          const worker = new Worker(__filename, {workerData: {format, tokDir, records: records.slice(w * per, (w + 1) * per)}});
          worker.on('message', resolve);
          worker.on('error', reject);
        }));
      }
      results = await Promise.all(parts);
    }
    const tokens = results.reduce((a, r) => a + r.tokens, 0);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9 - Math.max(...results.map((r) => r.loadSeconds));
    console.log(JSON.stringify({records: records.length, bytes, seconds, tokens,
                                records_per_s: records.length / seconds, MBps: bytes / 1e6 / seconds}));
  })();
} else {
  prepare(workerData).then((result) => parentPort.postMessage(result));
}
