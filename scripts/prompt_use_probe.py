"""Does a randomly initialised T5 of our compact shape learn to read its prompt?

A diagnostic, not part of the product. It trains the reference implementation (PyTorch +
transformers) with the config, tokenizer and instruction lines of an `instructrec run` work
folder, so that a failure seen in the Rust trainer can be told apart from a bug in it. Two modes:

  rerank  tunes on the P1/T3 plain lines (or variants of their prompts) and prints validation
          HR@1 on 200 lines next to HR@1 with the prompts rotated by one line: a model that reads
          its prompt scores lower with another user's prompt.
  copy    the smallest such lesson: the prompt is LENGTH random item-token ids and the target is
          one of them. With LENGTH 1 the answer is the whole prompt.

The findings are in docs/training.md ("The reference implementation fails the same way").

  python scripts/prompt_use_probe.py rerank --run /work/runs/default3 --steps 600
  python scripts/prompt_use_probe.py copy --run /work/runs/default3 --ids 16000 --length 1
"""

import argparse
import json
import math
import random
import re
import time

import torch
from tokenizers import Tokenizer
from transformers import T5Config, T5ForConditionalGeneration

# Item tokens follow the 8,000 learned pieces and sentinels in a `--item-tokens` tokenizer.
FIRST_ITEM_TOKEN = 8000


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["rerank", "copy"])
    p.add_argument("--run", required=True, help="an `instructrec run` work folder")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--relative-steps", action="store_true",
                   help="scale each tensor's AdamW step by its root mean square, as Adafactor does (nanoT5's AdamWScale)")
    p.add_argument("--eval-every", type=int, default=200)
    # rerank: what the prompt shows
    p.add_argument("--prompt", choices=["instruction", "compact", "candidates"], default="instruction",
                   help="the line's own instruction; 'History: ... Candidates: ...'; or the candidates only")
    p.add_argument("--history", type=int, default=20, help="last N history items (compact prompts)")
    p.add_argument("--curriculum", type=int, default=0,
                   help="candidates-only prompts start with the answer alone and gain one candidate every N steps")
    # rerank: training and initialisation variants
    p.add_argument("--contrast", type=float, default=0.0,
                   help="weight of a softmax over the candidates' mean log-likelihoods, added to the NLL")
    p.add_argument("--passthrough", action="store_true",
                   help="cross-attention starts as identity values and outputs with uniform attention")
    p.add_argument("--passthrough-gain", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=None, help="override the config's dropout rate")
    p.add_argument("--final-norm", type=float, default=None,
                   help="start the decoder's final layer-norm weights here (1.0): a larger value raises the ceiling on the logits")
    p.add_argument("--content-init", action="store_true",
                   help="item-token embeddings start as random projections of their titles' tf-idf vectors")
    p.add_argument("--common-item-init", action="store_true",
                   help="item-token embeddings start as one shared vector plus noise")
    p.add_argument("--embedding-lr", type=float, default=None, help="0 freezes the embeddings")
    p.add_argument("--embedding-std", type=float, default=None,
                   help="re-draw the (tied) embeddings with this standard deviation (transformers: 1.0)")
    # copy
    p.add_argument("--ids", type=int, default=16000, help="how many item-token ids the copy prompts draw from")
    p.add_argument("--length", type=int, default=1, help="copy prompt length")
    p.add_argument("--grow", type=int, default=0,
                   help="copy prompts start one token long and gain one every N steps up to --length")
    return p.parse_args()


def content_embeddings(a, tok, dim):
    """Item token -> sum of idf-weighted random word vectors of its title, scaled to the norm a
    transformers-initialised embedding has, so that titles sharing words start out similar."""
    titles = [json.loads(line)["title"] for line in open(f"{a.run}/prepared/items.jsonl")]
    words = [set(re.findall(r"[a-z0-9]+", t.lower())) for t in titles]
    df = {}
    for ws in words:
        for w in ws:
            df[w] = df.get(w, 0) + 1
    gen = torch.Generator().manual_seed(a.seed)
    vectors = {w: torch.randn(dim, generator=gen) for w in sorted(df)}
    rows = {}
    for title, ws in zip(titles, words):
        token = tok.token_to_id(title)
        if token is None or token < FIRST_ITEM_TOKEN or not ws:
            continue
        v = sum(math.log(len(titles) / df[w]) * vectors[w] for w in sorted(ws))
        rows[token] = v / v.norm() * math.sqrt(dim)
    return rows


def model_and_optimiser(a, config, tok=None):
    torch.manual_seed(a.seed)
    m = T5ForConditionalGeneration(config)
    if a.content_init:
        with torch.no_grad():
            for token, v in content_embeddings(a, tok, config.d_model).items():
                m.shared.weight[token] = v
    if a.passthrough:
        with torch.no_grad():
            for block in m.decoder.block:
                att = block.layer[1].EncDecAttention
                att.v.weight.copy_(torch.eye(att.v.weight.shape[0], config.d_model))
                att.o.weight.copy_(a.passthrough_gain * torch.eye(config.d_model, att.o.weight.shape[1]))
                att.q.weight.zero_()
    if a.final_norm is not None:
        with torch.no_grad():
            m.decoder.final_layer_norm.weight.fill_(a.final_norm)
    if a.embedding_std is not None:
        with torch.no_grad():
            m.shared.weight.normal_(0.0, a.embedding_std)
    if a.common_item_init:
        with torch.no_grad():
            rows = m.shared.weight.shape[0] - FIRST_ITEM_TOKEN
            m.shared.weight[FIRST_ITEM_TOKEN:] = torch.randn(config.d_model) + 0.3 * torch.randn(rows, config.d_model)
    rest = [q for q in m.parameters() if q is not m.shared.weight]
    groups = [{"params": rest},
              {"params": [m.shared.weight], "lr": a.lr if a.embedding_lr is None else a.embedding_lr}]
    opt = (RelativeAdamW if a.relative_steps else torch.optim.AdamW)(groups, lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 100) * max(0.0, 1 - s / max(a.steps, 1)))
    m.train()
    return m, opt, sched


class RelativeAdamW(torch.optim.Optimizer):
    """AdamW whose step for a tensor is lr times that tensor's root mean square (at least 1e-3),
    so that T5's unit-variance embeddings and its small query weights move at the same relative
    rate."""

    def __init__(self, params, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                direction = (st["m"] / (1 - b1 ** st["t"])) / ((st["v"] / (1 - b2 ** st["t"])).sqrt() + g["eps"])
                scale = max(1e-3, p.pow(2).mean().sqrt().item())
                p.mul_(1 - g["lr"] * g["weight_decay"])
                p.add_(direction, alpha=-g["lr"] * scale)


def step(m, opt, sched, loss):
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    sched.step()


def copy_mode(a, config):
    m, opt, sched = model_and_optimiser(a, config)
    rng = torch.Generator().manual_seed(a.seed)
    for s in range(1, a.steps + 1):
        length = min(a.length, 1 + s // a.grow) if a.grow else a.length
        x = torch.randint(FIRST_ITEM_TOKEN, FIRST_ITEM_TOKEN + a.ids, (a.batch, length), generator=rng)
        pick = torch.randint(0, length, (a.batch,), generator=rng)
        y = torch.stack([x[torch.arange(a.batch), pick], torch.ones(a.batch, dtype=torch.long)], 1)
        out = m(input_ids=x, labels=y)
        step(m, opt, sched, out.loss)
        if s % a.eval_every == 0:
            with torch.no_grad():
                m.eval()
                acc = (m(input_ids=x, labels=y).logits[:, 0, :].argmax(-1) == y[:, 0]).float().mean().item()
                m.train()
            # The mean is over the answer and EOS; EOS costs next to nothing, so twice the mean is
            # the answer's NLL (log(16000) = 9.7 for a guess, log(LENGTH) for a perfect copier).
            print(f"step {s} length {length} answer nll {2 * out.loss.item():.3f} batch accuracy {acc:.3f}", flush=True)


def rerank_mode(a, config, tok):
    titles = [json.loads(line)["title"] for line in open(f"{a.run}/prepared/items.jsonl")]

    def lines(split, limit=None):
        out = []
        for line in open(f"{a.run}/instructions/{split}.jsonl"):
            d = json.loads(line)
            if (d["preference"], d["task"], d["strategy"]) == ("P1", "T3", "plain"):
                out.append(d)
                if limit and len(out) >= limit:
                    break
        return out

    train, valid = lines("train"), lines("validation", 200)
    shown = [10]  # candidates shown by the curriculum; evaluation always shows all ten

    def prompt(d):
        if a.prompt == "instruction":
            return d["instruction"]
        cands = d["candidates"]
        if a.prompt == "candidates":
            if shown[0] < len(cands):
                cands = [c for c in cands if c != d["target_item"]][: shown[0] - 1] + [d["target_item"]]
                random.Random(d["user"]).shuffle(cands)
            return "Candidates: " + "; ".join(titles[i] for i in cands) + "."
        history = d["history"][-a.history:]
        return ("History: " + "; ".join(titles[i] for i in history)
                + ". Candidates: " + "; ".join(titles[i] for i in cands) + ".")

    def batch_ids(texts, limit):
        ids = [tok.encode(t).ids[:limit] for t in texts]
        width = max(len(r) for r in ids)
        x = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for i, r in enumerate(ids):
            x[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return x, mask

    def labels(texts):
        y, mask = batch_ids(texts, 40)
        y[mask == 0] = -100
        return y

    def candidate_scores(m, states, mask, lists):
        per = len(lists[0])
        y = labels([titles[c] for cl in lists for c in cl])
        out = m(encoder_outputs=(states.repeat_interleave(per, 0),),
                attention_mask=mask.repeat_interleave(per, 0), labels=y)
        logp = torch.log_softmax(out.logits, -1)
        valid_tok = y != -100
        tok_lp = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid_tok
        return (tok_lp.sum(-1) / valid_tok.sum(-1)).view(len(lists), per)

    @torch.no_grad()
    def hr1(m, rotate):
        m.eval()
        hits = 0
        for i in range(0, len(valid), 20):
            chunk = valid[i: i + 20]
            sources = [valid[(i + j + rotate) % len(valid)] for j in range(len(chunk))]
            x, mask = batch_ids([prompt(d) for d in sources], 320)
            states = m.encoder(input_ids=x, attention_mask=mask).last_hidden_state
            scores = candidate_scores(m, states, mask, [d["candidates"] for d in chunk])
            hits += sum(int(d["candidates"][scores[j].argmax().item()] == d["target_item"])
                        for j, d in enumerate(chunk))
        m.train()
        return hits / len(valid)

    m, opt, sched = model_and_optimiser(a, config, tok)
    print(f"step 0 HR@1 {hr1(m, 0):.3f} with another line's prompt {hr1(m, 1):.3f}", flush=True)
    rng = random.Random(a.seed + 1)
    start, recent = time.time(), []
    for s in range(1, a.steps + 1):
        if a.curriculum:
            shown[0] = min(10, 1 + s // a.curriculum)
        chunk = rng.sample(train, a.batch)
        x, mask = batch_ids([prompt(d) for d in chunk], 320)
        loss = m(input_ids=x, attention_mask=mask, labels=labels([d["target"] for d in chunk])).loss
        if a.contrast > 0:
            states = m.encoder(input_ids=x, attention_mask=mask).last_hidden_state
            scores = candidate_scores(m, states, mask, [d["candidates"] for d in chunk])
            answer = torch.tensor([d["candidates"].index(d["target_item"]) for d in chunk])
            loss = loss + a.contrast * torch.nn.functional.cross_entropy(scores * 10, answer)
        step(m, opt, sched, loss)
        recent = (recent + [loss.item()])[-50:]
        if s % a.eval_every == 0:
            kept = shown[0]
            shown[0] = 10
            own, rotated = hr1(m, 0), hr1(m, 1)
            shown[0] = kept
            print(f"step {s} train loss {sum(recent) / len(recent):.3f} HR@1 {own:.3f} "
                  f"with another line's prompt {rotated:.3f} ({time.time() - start:.0f} s)", flush=True)


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(f"{a.run}/model/best/tokenizer.json")
    config = T5Config.from_pretrained(f"{a.run}/model/best")
    config.vocab_size = tok.get_vocab_size(True)
    if a.dropout is not None:
        config.dropout_rate = a.dropout
    if a.mode == "copy":
        copy_mode(a, config)
    else:
        rerank_mode(a, config, tok)


if __name__ == "__main__":
    main()
