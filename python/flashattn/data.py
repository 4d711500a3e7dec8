"""The training text: bytes of a real corpus that is already on every machine that runs
this package — the Python standard library's own source (the top-level *.py files of the
running interpreter's stdlib, sorted by name: about 4.7 MB of English-commented code in
Python 3.11) — or any file or folder given with --corpus. Tokens are bytes (vocabulary 256).

The split is by position: the last `valid_fraction` of the bytes is held out for validation,
so the two are disjoint and the same on every run.
"""

import hashlib
import os
import sysconfig

import torch


def default_corpus():
    return sysconfig.get_paths()["stdlib"]


def read_corpus(path=None):
    """The corpus's bytes: a file, or every *.py directly in a folder, sorted by name."""
    path = path or default_corpus()
    if not os.path.exists(path):
        raise ValueError(f"corpus: {path} does not exist")
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".py"))
        data = b"".join(open(os.path.join(path, f), "rb").read() for f in files)
    else:
        data = open(path, "rb").read()
    if len(data) == 0:
        raise ValueError(f"corpus: {path} is empty (a folder needs *.py files in it)")
    return data


class Corpus:
    def __init__(self, path=None, valid_fraction=0.1):
        data = read_corpus(path)
        self.path = path or default_corpus()
        self.sha256 = hashlib.sha256(data).hexdigest()[:16]
        tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
        split = int(len(tokens) * (1.0 - valid_fraction))
        self.train, self.valid = tokens[:split], tokens[split:]

    def describe(self):
        return (f"{self.path} ({len(self.train) + len(self.valid)} bytes, sha256 {self.sha256}…; "
                f"{len(self.train)} train, {len(self.valid)} validation)")

    def batch(self, split, batch, context, generator):
        """(inputs, targets), both (batch, context): windows at random offsets of the split."""
        tokens = self.train if split == "train" else self.valid
        if len(tokens) <= context:
            raise ValueError(f"the {split} split has {len(tokens)} tokens, fewer than context + 1 = {context + 1}")
        starts = torch.randint(0, len(tokens) - context - 1, (batch,), generator=generator)
        rows = torch.stack([tokens[s:s + context + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]

    def validation_batches(self, batch, context, count):
        """The same `count` validation batches every time: evenly spaced windows."""
        tokens = self.valid
        if len(tokens) <= context:
            raise ValueError(f"the validation split has {len(tokens)} tokens, fewer than context + 1 = {context + 1}")
        n = batch * count
        starts = torch.linspace(0, len(tokens) - context - 1, n).long().tolist()
        rows = torch.stack([tokens[s:s + context + 1] for s in starts])
        return [(rows[i:i + batch, :-1], rows[i:i + batch, 1:]) for i in range(0, n, batch)]
