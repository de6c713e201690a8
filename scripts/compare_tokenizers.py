#!/usr/bin/env python3
"""Mean tokens per test instruction under several tokenizer trainings (docs/training.md, "The
tokenizer split the commonest short words into letters"). Needs Python `tokenizers`.

  scripts/compare_tokenizers.py runs/amazon-games/instructions ../shared/datasets/amazon-games \
      unigram bpe bpe-punct unigram-punct

Trains on every sixth train line (instruction and target), 7,900 pieces, adds every title of
two words or more as a token (as `--item-tokens` does; not with the -punct kinds), then encodes
the first 1,000 test instructions."""
import json
import sys
import time

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

SPECIALS = ["<pad>", "</s>", "<unk>"]
PIECES = 7900


def main():
    instructions, dataset, *kinds = sys.argv[1:]
    lines = []
    with open(f"{instructions}/train.jsonl") as f:
        for i, line in enumerate(f):
            if i % 6 == 0:
                d = json.loads(line)
                lines += [d["instruction"], d["target"]]
    with open(f"{instructions}/test.jsonl") as f:
        test = [json.loads(line)["instruction"] for line in f][:1000]
    titles = set()
    with open(f"{dataset}/items.jsonl") as f:
        for line in f:
            title = json.loads(line).get("title")
            if title and len(title.split()) > 1:
                titles.add(title)
    meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    for kind in kinds:
        started = time.time()
        base, _, punct = kind.partition("-")
        pre = pre_tokenizers.Sequence([meta, pre_tokenizers.Punctuation()]) if punct else meta
        if base == "bpe":
            tok = Tokenizer(models.BPE(unk_token="<unk>"))
            trainer = trainers.BpeTrainer(vocab_size=PIECES, special_tokens=SPECIALS, show_progress=False)
        else:
            tok = Tokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(
                vocab_size=PIECES, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
            )
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), normalizers.Strip(), normalizers.Replace(" {2,}", " ")]
        )
        tok.pre_tokenizer = pre
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(lines, trainer)
        if not punct:
            tok.add_tokens([AddedToken(t, single_word=True, normalized=True) for t in sorted(titles)])
        lengths = [len(tok.encode(x).ids) for x in test]
        sample = tok.encode("Here is what this customer has bought so far").tokens
        print(f"{kind}: mean tokens {sum(lengths) / len(lengths):.1f} "
              f"({time.time() - started:.0f} s) {' '.join(sample)}")


if __name__ == "__main__":
    main()
