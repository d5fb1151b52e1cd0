"""Fine-tuning from Python through the llmft package (python/llmft, ctypes over the C ABI): a LoRA run on a Hugging
Face model folder with a progress line per step and the library's messages through a Python function; Ctrl-C stops
after the step with a checkpoint (run it again to continue from there); then an answer from the tuned model.
    python finetune.py MODEL_DIR OUTPUT_DIR [MAX_STEPS]
MODEL_DIR may instead be a tokenizer.json: then the library's embedded default model (random weights) is tuned."""
import sys

import llmft


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    model = sys.argv[1]
    settings = {"tokenizer.path" if model.endswith(".json") else "model.path": model, "output.dir": sys.argv[2],
                "train.mode": "lora",
                "train.max_steps": int(sys.argv[3]) if len(sys.argv) > 3 else 20,
                "data.synthetic_records": 64, "data.seq_len": 128, "generate.num_samples": 0, "log.every": 1000}

    def log(level: int, message: str) -> None:
        print(f"[llmft {'warn' if level >= llmft.WARN else 'info'}] {message}", file=sys.stderr)

    with llmft.Config(**settings) as cfg:
        with llmft.Trainer(cfg, log=log) as trainer:
            for s in trainer:
                print(f"step {s.step}: loss {s.loss:.4f}")
            adapter = trainer.finish()
        print("adapter:", adapter)
        with llmft.Generator(cfg, adapter=adapter, log_level=llmft.WARN) as g:
            print("answer:", g.answer("Tell me a story about a bird.", max_new_tokens=16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
