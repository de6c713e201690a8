"""Writes the tiny BERT fixture that instructrec-text's tests compare against.

A randomly initialised BertModel (2 layers, hidden 32) with a WordPiece tokenizer trained on a
few sentences, plus the mean-pooled, L2-normalised embeddings transformers computes for a set
of test sentences (padded together in one batch, so the attention mask matters).

    python3 -m venv target/bert-venv && target/bert-venv/bin/pip install torch transformers
    target/bert-venv/bin/python scripts/make_bert_fixture.py

With --check DIR it instead prints the embeddings of a few sentences from a real checkpoint
directory (all-MiniLM-L6-v2), as JSON, for comparison with the Rust encoder.
"""

import argparse
import json
import os

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "instructrec-text", "tests", "fixtures", "tiny-bert")

CORPUS = [
    "Pokemon Moon for the Nintendo 3DS",
    "Xbox One play and charge kit",
    "a horror game with a strong story",
    "wireless gaming mouse for PC, RGB lighting",
    "Super Mario Odyssey - Nintendo Switch",
    "The Legend of Zelda: Breath of the Wild",
    "PlayStation 4 controller charging station",
]

SENTENCES = [
    "Pokemon Moon - Nintendo 3DS",
    "a gift my son would enjoy",
    "Video Games, PC, Accessories, Gaming Mice",
    "zzz unknown wordz",
    "Mario",
]


def pooled(model, tok, sentences):
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)


def make_fixture():
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    # Pad every input to a fixed length, as all-MiniLM-L6-v2's tokenizer.json does, so the test
    # also covers the encoder replacing that padding.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=128)
    tokenizer.enable_truncation(128)
    os.makedirs(OUT, exist_ok=True)
    tokenizer.save(os.path.join(OUT, "tokenizer.json"))

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=True).eval()
    # Random weights far from initialisation scale, so a wrong op shows up in the output.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    model.save_pretrained(OUT, safe_serialization=True)

    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(OUT, "tokenizer.json"), pad_token="[PAD]")
    fast._tokenizer.no_padding()
    emb = pooled(model, fast, SENTENCES)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"sentences": SENTENCES, "embeddings": emb.tolist()}, f)
    print("wrote", os.path.abspath(OUT))


def check(directory):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = BertModel.from_pretrained(directory).eval()
    sentences = [
        "Pokemon Moon - Nintendo 3DS",
        "A horror game with a strong story",
        "Video Games, PC, Accessories, Gaming Mice",
        "something my son would enjoy for his Switch",
    ]
    print(json.dumps({"sentences": sentences, "embeddings": pooled(model, tok, sentences).tolist()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", help="a BERT checkpoint directory to print embeddings for")
    args = parser.parse_args()
    if args.check:
        check(args.check)
    else:
        make_fixture()
