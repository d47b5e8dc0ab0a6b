"""An independent byte-level BPE (GPT-2 algorithm) over GGUF vocab/merges, for tokenizer tests.

Written from the algorithm, not from `tokenizers`: special tokens split first; each remaining
span is pre-tokenized (SmolLM2: every digit alone, then GPT-2's regex), mapped to GPT-2's
byte-to-unicode alphabet, and merged by lowest merge rank until no pair is in the table.
"""
import regex

GPT2_PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceBPE:
    def __init__(self, tokens, merges, specials):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.specials = sorted(specials, key=len, reverse=True)
        self.b2u = bytes_to_unicode()

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: self.ranks.get((parts[i], parts[i + 1]), 1 << 60))
            if (parts[best], parts[best + 1]) not in self.ranks:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [self.vocab[p] for p in parts]

    def _pretokenize(self, text):
        pieces = []
        for chunk in regex.split(r"(\p{N})", text):  # digits stand alone
            if chunk:
                pieces += GPT2_PAT.findall(chunk)
        return pieces

    def encode(self, text):
        ids, i, start = [], 0, 0
        while i <= len(text):
            sp = next((s for s in self.specials if text.startswith(s, i)), None) if i < len(text) else None
            if sp is None and i < len(text):
                i += 1
                continue
            for piece in self._pretokenize(text[start:i]):
                ids += self._bpe("".join(self.b2u[b] for b in piece.encode("utf-8")))
            if sp is None:
                break
            ids.append(self.vocab[sp])
            i += len(sp)
            start = i
        return ids
