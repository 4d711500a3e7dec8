"""The end-to-end training experiment's pieces: the model with each attention, exact resume,
the data split, bad arguments, generation with the KV cache, and the main job's command."""

import json
import os
import subprocess
import sys

import pytest
import torch

from flashattn import data, experiment, generate, gpt, train
from conftest import assert_close_by_rule


def tiny_args(tmp_path, **changes):
    args = train.build_parser().parse_args([])
    for k, v in dict(width=32, layers=2, heads=2, context=24, batch=3, steps=6, warmup=2, eval_every=3,
                     eval_batches=2, quiet=True, out=str(tmp_path)).items():
        setattr(args, k, v)
    for k, v in changes.items():
        setattr(args, k, v)
    return args


@pytest.fixture(scope="module")
def corpus():
    return data.Corpus()


def test_three_attentions_give_the_same_losses(tmp_path, corpus):
    losses = {}
    for attention in gpt.ATTENTIONS:
        records = train.train(tiny_args(tmp_path / attention, attention=attention), corpus)
        losses[attention] = [(r["loss"], r["valid_loss"]) for r in records]
    for attention in ("flash", "sdpa"):
        for (a, va), (b, vb) in zip(losses[attention], losses["standard"]):
            assert abs(a - b) <= 1e-5 * abs(b)  # fp32 summation order only (measured: ~1e-7)
            assert (va is None) == (vb is None) and (va is None or abs(va - vb) <= 1e-5 * abs(vb))


def test_bf16_autocast_trains_like_pytorchs_own_bf16_attention(tmp_path, corpus):
    """Mixed precision: attention gets bf16 q, k, v; flashattn's losses follow PyTorch's SDPA in
    the same autocast within bf16's precision, and the run learns."""
    losses = {}
    for attention in ("flash", "sdpa"):
        records = train.train(tiny_args(tmp_path / attention, attention=attention, autocast="bf16", steps=12), corpus)
        losses[attention] = [r["loss"] for r in records]
    for a, b in zip(losses["flash"], losses["sdpa"]):
        assert abs(a - b) <= 2e-3 * abs(b)  # they round differently (measured: 4e-5 relative)
    assert losses["flash"][-1] < losses["flash"][0]


def test_one_step_gradient_flash_matches_standard_by_the_rule(corpus):
    x, y = corpus.batch("train", 2, 40, torch.Generator().manual_seed(3))
    grads = {}
    for attention, dtype in (("flash", torch.float32), ("standard", torch.float32), ("standard", torch.float64)):
        torch.manual_seed(0)
        model = gpt.GPT(gpt.GPTConfig(context=40, width=32, layers=2, heads=2, attention=attention)).to(dtype)
        model(x, y)[1].backward()
        grads[(attention, dtype)] = {n: p.grad for n, p in model.named_parameters()}
    for name, ref in grads[("standard", torch.float64)].items():
        assert_close_by_rule(name, grads[("flash", torch.float32)][name], grads[("standard", torch.float32)][name], ref)


def test_resume_reproduces_the_uninterrupted_run_bitwise(tmp_path, corpus):
    full = train.train(tiny_args(tmp_path / "full", dropout=0.1, steps=8), corpus)
    train.train(tiny_args(tmp_path / "part", dropout=0.1, steps=8, stop_after=3), corpus)
    resumed = train.train(tiny_args(tmp_path / "part", dropout=0.1, steps=8,
                                    resume=str(tmp_path / "part" / "checkpoint.pt")), corpus)
    assert [r["step"] for r in resumed] == list(range(4, 9))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[3:]]  # same batches, masks, bits
    logged = [json.loads(line)["step"] for line in open(tmp_path / "part" / "log.jsonl")]
    assert logged == list(range(1, 9))


def test_split_is_deterministic_and_disjoint(tmp_path):
    text = bytes(range(256)) * 40
    path = tmp_path / "corpus.txt"
    path.write_bytes(text)
    a, b = data.Corpus(str(path)), data.Corpus(str(path))
    assert torch.equal(a.train, b.train) and torch.equal(a.valid, b.valid)
    assert len(a.train) + len(a.valid) == len(text) and bytes(a.train.tolist()) + bytes(a.valid.tolist()) == text
    x, y = a.batch("valid", 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 1:], y[:, :-1])
    again = a.validation_batches(2, 16, 3)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a.validation_batches(2, 16, 3), again))


def test_bad_corpus_and_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.Corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        data.Corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="--attention: expected one of flash, standard, sdpa"):
        train.check_args(tiny_args(tmp_path, attention="linear"))
    with pytest.raises(ValueError, match="longer than the model's 16 positions"):
        train.check_args(tiny_args(tmp_path, context=24, positions=16))
    done = subprocess.run([sys.executable, "-m", "flashattn.train", "--corpus", str(tmp_path / "missing.txt")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "corpus: " in done.stderr and "does not exist" in done.stderr


def test_generation_with_kv_cache_matches_recomputation(tmp_path, corpus):
    train.train(tiny_args(tmp_path, steps=3, context=48), corpus)
    model = generate.load(str(tmp_path / "checkpoint.pt"))
    prompt = torch.tensor([list(b"def f(x):")])
    cached = generate.generate_cached(model, prompt, 30)
    recomputed = generate.generate_recomputed(model, prompt, 30)
    assert cached.shape == (1, prompt.shape[1] + 30) and torch.equal(cached, recomputed)
    sampled = generate.generate_cached(model, prompt, 20, temperature=0.8, top_k=10, seed=5)
    assert torch.equal(sampled, generate.generate_recomputed(model, prompt, 20, temperature=0.8, top_k=10, seed=5))


def test_main_job_command_runs_end_to_end(tmp_path):
    """`python -m flashattn.experiment` on its smallest setting: every part and the report."""
    done = subprocess.run([sys.executable, "-m", "flashattn.experiment", "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "train.md").read_text()
    for heading in ("## 1. Same curve", "## 2. Faster", "## 3. Memory", "## 4. Longer context", "## 5. Generation"):
        assert heading in report
    parts = {json.loads(line)["part"] for line in open(tmp_path / "train.jsonl")}
    assert parts == {"same_curve", "speed", "memory", "longer_context", "generation"}
    assert "greedy tokens identical" in report
    assert "over the cap" in report  # the smoke setting's cap is 1 MiB: standard stops, flash goes on
