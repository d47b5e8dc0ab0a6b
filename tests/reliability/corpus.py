"""Shared helpers of the reliability tests: the committed fuzz seeds (tests/fixtures/fuzz_corpus/,
made by tests/fixtures/make_fuzz_corpus.py) and small real exports to damage."""
import os
import struct

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(REPO, "tests", "fixtures", "fuzz_corpus")
SEEDS = ("mlp", "block", "llm", "square", "legacy")


def read_seed(name: str):
    """(blob bytes, {constant key: byte size}) of one seed in the C++ fuzzer's input format."""
    with open(os.path.join(CORPUS, f"{name}.bin"), "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<H", data)
    table, blob = data[2:2 + n], data[2 + n:]
    sizes, i = {}, 0
    while i < len(table):
        k = table[i]
        key = table[i + 1:i + 1 + k].decode()
        (sizes[key],) = struct.unpack_from("<q", table, i + 1 + k)
        i += 1 + k + 8
    return blob, sizes
