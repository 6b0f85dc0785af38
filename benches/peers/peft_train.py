"""The training peer of benches/train.rs: PyTorch + peft on the same GGUF and the same token ids.

Reads the job kolm wrote (the model's path, LoRA rank/alpha/targets, the learning rate, and
batches of {tokens, prompt_len}), loads the GGUF with transformers (dequantised to f32), wraps
it with peft's LoRA, and trains batch by batch as Hugging Face training does: each batch padded
to its longest sequence with an attention mask, labels -100 on the prompt and the padding,
AdamW, gradient clipping at 1.0, every core. The first batch is a warm-up; the rest are timed.
Prints JSON: tokens/s over the timed batches (real tokens only, as kolm counts them) and the
peak resident memory.

Usage: python peft_train.py JOB.json
"""

import json
import os
import sys
import time

import peft
import torch
import transformers

# kolm's target names (GGUF tensor names) as the Hugging Face module names.
MODULES = {
    "attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj",
    "ffn_gate": "gate_proj", "ffn_up": "up_proj", "ffn_down": "down_proj",
}


def peak_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    job = json.load(open(sys.argv[1]))
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    path = job["model"]
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32
    )
    lora = peft.LoraConfig(r=job["rank"], lora_alpha=job["alpha"], lora_dropout=0.0,
                           target_modules=[MODULES[t] for t in job["targets"]])
    model = peft.get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=job["learning_rate"])

    def tensors(batch):
        width = max(len(e["tokens"]) for e in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for i, e in enumerate(batch):
            n, p = len(e["tokens"]), e["prompt_len"]
            ids[i, :n] = torch.tensor(e["tokens"])
            mask[i, :n] = 1
            labels[i, p:n] = torch.tensor(e["tokens"][p:])
        return ids, mask, labels

    def step(batch) -> None:
        ids, mask, labels = tensors(batch)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()

    batches = job["batches"]
    step(batches[0])
    t = time.perf_counter()
    for b in batches[1:]:
        step(b)
    dt = time.perf_counter() - t
    tokens = sum(len(e["tokens"]) for b in batches[1:] for e in b)
    print(json.dumps({
        "torch": torch.__version__, "peft": peft.__version__,
        "tokens_per_s": tokens / dt,
        # VmHWM, not getrusage: ru_maxrss survives execve, so it would report the parent's.
        "peak_rss_bytes": peak_rss(),
    }))


if __name__ == "__main__":
    main()
