"""The training peer of benches/train.rs: PyTorch + peft on a model with Qwen2.5-0.5B's shape
(random init from transformers' Qwen2Config, f32), LoRA rank 8 / alpha 16 on q, k, v, o, one
sequence of SEQ random tokens per step with the loss on its last half, AdamW, the same thread
count, one warm-up step, then STEPS timed steps. Prints JSON.

Usage: python peft_train.py SEQ STEPS
"""

import json
import os
import sys
import time

import peft
import torch
import transformers


def peak_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    seq, steps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
    )
    model = transformers.Qwen2ForCausalLM(config).float()
    lora = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = peft.get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, 50_000, (1, seq))
    labels = ids.clone()
    labels[:, : seq // 2] = -100

    def step() -> None:
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t
    print(json.dumps({
        "torch": torch.__version__, "peft": peft.__version__,
        "tokens_per_s": steps * seq / dt,
        # VmHWM, not getrusage: ru_maxrss survives execve, so it would report the parent's.
        "peak_rss_bytes": peak_rss(),
    }))


if __name__ == "__main__":
    main()
