#!/usr/bin/env python3
"""transformers' apply_chat_template (jinja2, transformers' own environment and message preparation) on every
real-template case of tests/data/jinja_cases.json; tests/hf/test_chat_templates.cpp compares llmft's rendering.

  hf_chat.py CASES DATA_DIR TOKENIZER_JSON OUT

Each real-template case: the template (a file, or the chat_template of a tokenizer_config.json, from DATA_DIR), the
named context (messages, tools, other keys) with the case's overrides (bos_token, eos_token, add_generation_prompt,
enable_thinking, ...). strftime_now() sees the case's "now". Feature cases marked "judge": "jinja2" (inline
templates that are not chats) render through transformers' compiled template directly, with their context.
OUT gets one JSON object per line: {"name", "text"} or {"name", "error"} (the template raised).
A second mode tokenizes with return_assistant_tokens_mask, for templates that mark {% generation %} spans:

  hf_chat.py --masks GENERATION_TEMPLATES CASES TOKENIZER_JSON OUT
     every template of GENERATION_TEMPLATES (tests/data/generation_templates.json) on each of its conversations
     (contexts of CASES); OUT: one {"template", "conversation", "ids", "mask"} per line, from
     apply_chat_template(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
"""
import datetime as _datetime
import json
import os
import sys

import transformers
import transformers.utils.chat_template_utils as ctu


def tokenizer(path):
    return transformers.PreTrainedTokenizerFast(tokenizer_file=path)


def set_now(stamp):
    fixed = _datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M")

    class Fixed(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    ctu.datetime = Fixed


def template_of(case, data_dir):
    if "template" in case:
        return case["template"]
    if "template_file" in case:
        with open(os.path.join(data_dir, case["template_file"]), encoding="utf-8") as f:
            return f.read()
    with open(os.path.join(data_dir, case["template_config"]), encoding="utf-8") as f:
        return json.load(f)["chat_template"]


def render_cases(cases_path, data_dir, tokenizer_json, out_path):
    with open(cases_path, encoding="utf-8") as f:
        doc = json.load(f)
    contexts = doc.get("contexts", {})
    tok = tokenizer(tokenizer_json)
    with open(out_path, "w") as out:
        for case in doc["cases"]:
            feature = "template" in case
            if feature and case.get("judge") != "jinja2":
                continue
            ctx = dict(contexts.get(case.get("context_ref"), {}))
            ctx.update(case.get("context", {}))
            set_now(case.get("now", "2024-07-26T10:30"))
            try:
                template = template_of(case, data_dir)
                if feature:
                    text = ctu._compile_jinja_template(template).render(**ctx)
                else:
                    messages = ctx.pop("messages", [])
                    tools = ctx.pop("tools", None)
                    gen = ctx.pop("add_generation_prompt", False)
                    text = tok.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False,
                                                   add_generation_prompt=gen, **ctx)
                out.write(json.dumps({"name": case["name"], "text": text}, ensure_ascii=False) + "\n")
            except Exception as e:  # the template raised (raise_exception) or jinja2 refused it
                out.write(json.dumps({"name": case["name"], "error": f"{type(e).__name__}: {e}"}) + "\n")


def masks(templates_path, cases_path, tokenizer_json, out_path):
    tok = tokenizer(tokenizer_json)
    with open(templates_path, encoding="utf-8") as f:
        doc = json.load(f)
    with open(cases_path, encoding="utf-8") as f:
        contexts = json.load(f)["contexts"]
    with open(out_path, "w") as out:
        for name, template in doc["templates"].items():
            for conv in doc["conversations"]:
                r = tok.apply_chat_template(contexts[conv]["messages"], chat_template=template, tokenize=True,
                                            return_dict=True, return_assistant_tokens_mask=True)
                out.write(json.dumps({"template": name, "conversation": conv, "ids": r["input_ids"],
                                      "mask": r["assistant_masks"]}) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--masks":
        masks(*sys.argv[2:])
    else:
        render_cases(*sys.argv[1:])
