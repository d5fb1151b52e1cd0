#!/usr/bin/env node
// Chat-template oracle: renders cases with @huggingface/jinja (the reference llmft's C++ engine must match byte for
// byte) and prints the results as one JSON array on stdout.
//
//   node jinja_render.js CASES.json [--data-dir DIR]
//   node jinja_render.js --template FILE [--context FILE.json] [--now 2024-07-26T10:30]
//
// CASES.json is either an array of cases or {"contexts": {NAME: {...}}, "cases": [...]}. A case is
//   {"name": "...",                       unique
//    "template": "..." | "template_file": "rel/path.jinja" | "template_config": "rel/tokenizer_config.json",
//    "context": {...}, "context_ref": NAME,      context = {...contexts[NAME], ...context}
//    "now": "2024-07-26T10:30"}                  optional: the local time strftime_now() sees
// Files are relative to --data-dir (default $LLMFT_TEST_DATA, else ../shared/data). Each result is
//   {"name", "output"} | {"name", "error": true, "stage": "parse"|"render", "message"} | {"name", "skipped": why}
// Exit status 2 when the reference package is not installed (run scripts/deps.sh test).
"use strict";

const fs = require("fs");
const path = require("path");

let Template;
try {
	({ Template } = require("@huggingface/jinja"));
} catch (e) {
	process.stderr.write(`jinja_render.js: cannot load @huggingface/jinja (${e.message}); run scripts/deps.sh test\n`);
	process.exit(2);
}

const RealDate = Date;

// Runs fn with `new Date()` (what the reference's strftime_now reads) frozen at the given local time.
function withNow(now, fn) {
	if (!now) return fn();
	const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(now);
	if (!m) throw new Error(`bad "now": ${now} (want YYYY-MM-DDTHH:MM[:SS])`);
	const fixed = new RealDate(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)).getTime();
	class FixedDate extends RealDate {
		constructor(...args) {
			if (args.length === 0) super(fixed);
			else super(...args);
		}
		static now() {
			return fixed;
		}
	}
	globalThis.Date = FixedDate;
	try {
		return fn();
	} finally {
		globalThis.Date = RealDate;
	}
}

function templateOf(c, dataDir) {
	if (typeof c.template === "string") return c.template;
	const rel = c.template_file ?? c.template_config;
	if (!rel) throw new Error(`case ${c.name}: no template`);
	const file = path.join(dataDir, rel);
	if (!fs.existsSync(file)) return null;
	const text = fs.readFileSync(file, "utf8");
	return c.template_config ? JSON.parse(text).chat_template : text;
}

function renderCase(c, contexts, dataDir) {
	const source = templateOf(c, dataDir);
	if (source === null) return { name: c.name, skipped: "data not present" };
	const context = { ...(c.context_ref ? contexts[c.context_ref] : {}), ...(c.context ?? {}) };
	if (c.context_ref && !contexts[c.context_ref]) throw new Error(`case ${c.name}: unknown context ${c.context_ref}`);
	let template;
	try {
		template = new Template(source);
	} catch (e) {
		return { name: c.name, error: true, stage: "parse", message: String(e && e.message) };
	}
	try {
		return { name: c.name, output: withNow(c.now, () => template.render(context)) };
	} catch (e) {
		return { name: c.name, error: true, stage: "render", message: String(e && e.message) };
	}
}

function main(argv) {
	const opts = { dataDir: process.env.LLMFT_TEST_DATA || path.join("..", "shared", "data") };
	const positional = [];
	for (let i = 0; i < argv.length; ++i) {
		const a = argv[i];
		if (a === "--data-dir") opts.dataDir = argv[++i];
		else if (a === "--template") opts.template = argv[++i];
		else if (a === "--context") opts.context = argv[++i];
		else if (a === "--now") opts.now = argv[++i];
		else positional.push(a);
	}
	let contexts = {};
	let cases;
	if (opts.template) {
		const context = opts.context ? JSON.parse(fs.readFileSync(opts.context, "utf8")) : {};
		cases = [{ name: opts.template, template: fs.readFileSync(opts.template, "utf8"), context, now: opts.now }];
	} else if (positional.length === 1) {
		const doc = JSON.parse(fs.readFileSync(positional[0], "utf8"));
		cases = Array.isArray(doc) ? doc : doc.cases;
		contexts = Array.isArray(doc) ? {} : doc.contexts ?? {};
	} else {
		process.stderr.write("usage: node jinja_render.js CASES.json [--data-dir DIR] | --template FILE [--context FILE]\n");
		process.exit(1);
	}
	const results = cases.map((c) => renderCase(c, contexts, opts.dataDir));
	process.stdout.write(JSON.stringify(results) + "\n");
}

main(process.argv.slice(2));
