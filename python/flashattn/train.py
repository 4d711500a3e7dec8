"""python -m flashattn.train: train the GPT-2-style model (flashattn.gpt) on a byte corpus
(flashattn.data), with its attention chosen by --attention (flash, standard, sdpa).

AdamW with linear warm-up and cosine decay to --min-lr, gradient clipping, validation every
--eval-every steps on fixed held-out batches, a progress line (step, loss, tokens/s, ETA),
logs as JSON lines and CSV, and checkpoints that resume exactly: the model, the optimizer,
the step, the data sampler's generator and torch's generator (dropout) are all saved, so a
resumed run draws the same batches and masks and gives the same losses as one never stopped.
--autocast bf16 runs the forward under torch.autocast("cpu", bfloat16), as mixed-precision
training does: the linear layers compute in bf16, so attention gets bf16 q, k, v (flashattn
then computes in float32 inside and rounds its output once), the weights stay float32.
"""

import contextlib

import argparse
import csv
import json
import math
import os
import sys
import time

import torch

from .data import Corpus
from .gpt import ATTENTIONS, GPT, GPTConfig

LOG_FIELDS = ("step", "attention", "context", "loss", "valid_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m flashattn.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attention", default="flash", help=f"{', '.join(ATTENTIONS)} (default %(default)s)")
    p.add_argument("--context", type=int, default=256, help="tokens per sequence (default %(default)s)")
    p.add_argument("--positions", type=int, default=0, help="the model's positions (default: --context)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=8, help="sequences per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", default=None, help="a text file or a folder of *.py (default: Python's stdlib)")
    p.add_argument("--out", default="train-run", help="folder for log.jsonl, log.csv, checkpoint.pt")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also save every N steps (default: at the end)")
    p.add_argument("--resume", default=None, help="a checkpoint.pt to continue from")
    p.add_argument("--stop-after", type=int, default=0, help="stop (checkpointed) after this step, for resuming")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="train for this many seconds (the cosine decays over them; --steps caps the steps)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--autocast", default="none", choices=("none", "bf16"),
                   help="mixed precision: the forward under torch.autocast in bf16 (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def learning_rate(step, args, elapsed_s=0.0):
    """Linear warm-up over --warmup steps, then cosine decay to --min-lr over the remaining
    steps, or, with --time-budget, over the budget's seconds."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.time_budget > 0:
        progress = elapsed_s / args.time_budget
    else:
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def check_args(args):
    if args.attention not in ATTENTIONS:
        raise ValueError(f"--attention: expected one of {', '.join(ATTENTIONS)}, got {args.attention!r}")
    positions = args.positions or args.context
    if args.context > positions:
        raise ValueError(f"--context {args.context} is longer than the model's {positions} positions (--positions)")
    for name in ("context", "width", "layers", "heads", "batch", "steps", "eval_every", "eval_batches"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    if args.resume and not os.path.exists(args.resume):
        raise ValueError(f"--resume: {args.resume} does not exist")


def make_model(args):
    cfg = GPTConfig(context=args.positions or args.context, width=args.width, layers=args.layers,
                    heads=args.heads, dropout=args.dropout, attention=args.attention)
    return GPT(cfg)


def make_optimizer(model, args):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))


@torch.no_grad()
def precision(args):
    """The context the forward runs in: autocast to bf16, or nothing."""
    if getattr(args, "autocast", "none") == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validation_loss(model, batches, args):
    model.eval()
    with precision(args):
        losses = [model(x, y)[1].item() for x, y in batches]
    model.train()
    return sum(losses) / len(losses)


def save_checkpoint(path, model, optimizer, step, data_generator, args):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "data_generator": data_generator.get_state(), "torch_rng": torch.get_rng_state(),
                "config": model.cfg.to_dict(), "args": vars(args)}, tmp)
    os.replace(tmp, path)  # a crash never leaves half a checkpoint


class Progress:
    def __init__(self, total, quiet):
        self.total, self.quiet = total, quiet
        self.tty = sys.stderr.isatty()

    def update(self, step, loss, tokens_per_s, eta_s, valid=None):
        if self.quiet:
            return
        line = (f"step {step}/{self.total}  loss {loss:.4f}  {tokens_per_s:,.0f} tok/s  "
                f"ETA {int(eta_s) // 60}:{int(eta_s) % 60:02d}")
        if valid is not None:
            line += f"  valid {valid:.4f}"
        if self.tty:
            sys.stderr.write("\r" + line + " " * 8 + ("\n" if valid is not None or step == self.total else ""))
        elif valid is not None or step == self.total:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def train(args, corpus=None):
    """Runs the training that args describe; returns the list of log records."""
    check_args(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    corpus = corpus or Corpus(args.corpus)
    torch.manual_seed(args.seed)
    model = make_model(args)
    optimizer = make_optimizer(model, args)
    data_generator = torch.Generator().manual_seed(args.seed + 1)
    start = 0
    if args.resume:
        state = torch.load(args.resume, weights_only=False)
        if state["config"] != model.cfg.to_dict():
            raise ValueError(f"--resume: {args.resume} holds a model {state['config']}, not {model.cfg.to_dict()}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_generator.set_state(state["data_generator"])
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]
    valid_batches = corpus.validation_batches(args.batch, args.context, args.eval_batches)
    os.makedirs(args.out, exist_ok=True)
    mode = "a" if args.resume else "w"
    jsonl = open(os.path.join(args.out, "log.jsonl"), mode)
    csv_file = open(os.path.join(args.out, "log.csv"), mode, newline="")
    writer = csv.DictWriter(csv_file, fieldnames=LOG_FIELDS)
    if not args.resume:
        writer.writeheader()
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    progress = Progress(args.steps, args.quiet)
    records = []
    began = time.perf_counter()
    last = args.stop_after if args.stop_after > 0 else args.steps
    model.train()
    for step in range(start + 1, min(last, args.steps) + 1):
        step_began = time.perf_counter()
        lr = learning_rate(step - 1, args, time.perf_counter() - began)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = corpus.batch("train", args.batch, args.context, data_generator)
        with precision(args):
            _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
        optimizer.step()
        elapsed = time.perf_counter() - began
        record = {"step": step, "attention": args.attention, "context": args.context, "loss": loss.item(),
                  "valid_loss": None, "lr": lr, "grad_norm": grad_norm,
                  "tokens_per_s": args.batch * args.context / (time.perf_counter() - step_began),
                  "elapsed_s": elapsed}
        out_of_time = args.time_budget > 0 and elapsed >= args.time_budget
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            record["valid_loss"] = validation_loss(model, valid_batches, args)
        records.append(record)
        jsonl.write(json.dumps(record) + "\n")
        writer.writerow(record)
        done = step - start
        eta = max(0.0, args.time_budget - elapsed) if args.time_budget > 0 else elapsed / done * (args.steps - step)
        progress.update(step, record["loss"], record["tokens_per_s"], eta,
                        record["valid_loss"])
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, step, data_generator, args)
        if out_of_time:
            break
    final_step = records[-1]["step"] if records else start
    save_checkpoint(checkpoint, model, optimizer, final_step, data_generator, args)
    jsonl.close()
    csv_file.close()
    return records


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        corpus = Corpus(args.corpus)
        if not args.quiet:
            print(f"corpus: {corpus.describe()}", file=sys.stderr)
        records = train(args, corpus)
    except ValueError as e:
        print(f"python -m flashattn.train: {e}", file=sys.stderr)
        return 2
    if records:
        print(json.dumps({k: records[-1][k] for k in ("step", "loss", "valid_loss")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
