"""Generation-quality metrics of sampled continuations (all on token ids; our own implementations).

* distinct-n (Li et al., 2016): distinct n-grams / all n-grams, over all samples together.
* repetition rate (seq-rep-n, Welleck et al., 2019): per sample, 1 - distinct n-grams / n-grams;
  averaged over samples. 0 = no n-gram ever repeats within a sample.
* self-BLEU (Zhu et al., 2018): BLEU-N of each sample against all the other samples as references,
  averaged. High = the samples resemble each other (low diversity).
* the model's perplexity of its own samples: exp(mean negative log-probability the model gives
  the sampled tokens).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence


def ngrams(seq: Sequence, n: int) -> list[tuple]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(samples: Sequence[Sequence], n: int) -> float:
    grams = [g for s in samples for g in ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(samples: Sequence[Sequence], n: int = 4) -> float:
    rates = []
    for s in samples:
        grams = ngrams(s, n)
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def bleu(hypothesis: Sequence, references: Sequence[Sequence], max_n: int = 4, smooth: bool = True) -> float:
    """Sentence BLEU (Papineni et al., 2002): clipped n-gram precisions p_1..p_N, geometric mean,
    brevity penalty against the reference closest in length (ties: the shorter). ``smooth`` adds 1
    to the numerator and denominator of p_n for n > 1 (Lin and Och, 2004), so one missing 4-gram
    does not zero the score."""
    hyp_len = len(hypothesis)
    if hyp_len == 0 or not references:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(ngrams(hypothesis, n))
        max_ref: Counter = Counter()
        for ref in references:
            for g, c in Counter(ngrams(ref, n)).items():
                max_ref[g] = max(max_ref[g], c)
        matched = sum(min(c, max_ref[g]) for g, c in hyp.items())
        total = sum(hyp.values())
        if smooth and n > 1:
            matched, total = matched + 1, total + 1
        if matched == 0 or total == 0:
            return 0.0
        log_p += math.log(matched / total) / max_n
    ref_len = min((abs(len(r) - hyp_len), len(r)) for r in references)[1]
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)


def self_bleu(samples: Sequence[Sequence], max_n: int = 4) -> float:
    if len(samples) < 2:
        raise ValueError("self-BLEU needs at least 2 samples (set generation.num_samples >= 2)")
    scores = [bleu(s, [r for j, r in enumerate(samples) if j != i], max_n) for i, s in enumerate(samples)]
    return sum(scores) / len(scores)


def generation_report(samples: Sequence[Sequence[int]], logprob_sums: Sequence[float] | None, max_n: int = 4) -> dict:
    """Diversity and repetition of ``samples``; ``own_ppl`` from the model's log-probabilities of
    them (NaN when ``logprob_sums`` is None: e.g. beam scores, which are length-penalised)."""
    total = sum(len(s) for s in samples)
    report = {f"distinct_{n}": distinct_n(samples, n) for n in range(1, max_n + 1)}
    report[f"repetition_rate_{max_n}"] = repetition_rate(samples, max_n)
    report[f"self_bleu_{max_n}"] = self_bleu(samples, max_n)
    report["own_ppl"] = math.exp(-sum(logprob_sums) / total) if total and logprob_sums is not None else float("nan")
    report["num_samples"], report["tokens"] = len(samples), total
    return report
