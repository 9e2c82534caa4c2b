"""model.output=adaptive (the adaptive softmax, Grave et al. 2017): the log-probabilities every consumer
gets equal the full softmax built by hand from the same head and cluster weights; the training loss,
its gradients and the correct-count equal those of that full softmax; the clusters follow the
training data's frequency order; every decoder runs on it. (Export, int8, the transformers adapter,
from_pretrained and evaluate: the ``adaptive`` layout of tests/models/test_layout_matrix.py.)"""
import numpy as np
import pytest
import torch

from lstm_pipeline.evaluation.scoring import evaluate_ids
from lstm_pipeline.models.lm import RecurrentLM, default_cutoffs
from lstm_pipeline.registry import DECODERS

V = 60


def _model(seed: int = 0, **kw) -> RecurrentLM:
    torch.manual_seed(seed)
    cfg = dict(embedding_dim=12, hidden_size=24, num_layers=2, output="adaptive", adaptive_cutoffs=[6, 20],
               adaptive_head_bias=True, dropout=0.0)
    model = RecurrentLM(V, **{**cfg, **kw})
    counts = torch.rand(V, generator=torch.Generator().manual_seed(seed + 1))
    model.set_frequency_order(counts)  # a frequency order that is not the ids' order
    return model


def full_log_probs_by_hand(model: RecurrentLM, x: torch.Tensor) -> torch.Tensor:
    """x (N, H) -> (N, V) by token id: the one softmax the clusters factorise, from the raw weights."""
    a = model.adaptive
    head_lp = torch.log_softmax(x @ a.head.weight.T + a.head.bias, -1)  # (N, shortlist + clusters)
    by_rank = [head_lp[:, :a.cutoffs[0]]]
    for i, (down, up) in enumerate(a.tail):
        z = x @ down.weight.T @ up.weight.T  # (N, cluster size)
        by_rank.append(torch.log_softmax(z, -1) + head_lp[:, a.cutoffs[0] + i, None])
    by_rank = torch.cat(by_rank, -1)  # (N, V): column r is the token of frequency rank r
    order = torch.argsort(model.adaptive_rank)  # rank -> token id
    out = torch.empty_like(by_rank)
    out[:, order] = by_rank
    return out


def test_log_probs_equal_the_full_softmax_built_from_the_clusters():
    model = _model().eval()
    ids = torch.randint(0, V, (1, 41), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, _ = model(ids)  # (1, T, V)
        feats, _, _ = model.features_train(ids)
        ref = full_log_probs_by_hand(model, feats[0].double().float())
    torch.testing.assert_close(logits[0], ref, atol=1e-5, rtol=0)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(1, 41), atol=1e-5)
    # evaluate (carried state across windows): the exact per-token log-probabilities
    report = evaluate_ids(model, np.asarray(ids[0].tolist()), batch_size=1, bptt=9, return_logprobs=True)
    want = ref[:-1].gather(1, ids[0, 1:, None]).squeeze(1)
    np.testing.assert_allclose(report["logprobs"], want.numpy(), atol=1e-5, rtol=0)
    assert report["loss"] == pytest.approx(-want.double().mean().item(), abs=1e-5)


def test_step_and_prefill_hand_out_the_same_log_probabilities():
    model = _model().eval()
    ids = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, _ = model(ids)
        state = model.init_state(3)
        for t in range(12):
            lp, state = model.step(ids[:, t], state)
            torch.testing.assert_close(lp, ref[:, t], atol=1e-5, rtol=0)
        lp, _ = model.prefill(ids)
    torch.testing.assert_close(lp, ref[:, -1], atol=1e-5, rtol=0)


def test_head_loss_gradients_and_correct_count_equal_the_full_softmax():
    """The training path never forms the full distribution, yet gives its mean NLL, its gradients and
    the exact number of targets that are its argmax, also where the head's argmax is a cluster (then
    a shortlist token can still be the full argmax). Targets of -100 are skipped."""
    model = _model(3)
    with torch.no_grad():  # the clusters often the head's argmax, and peaked enough to hold it
        model.adaptive.head.bias[6:] += 1.0
        for _, up in model.adaptive.tail:
            up.weight.mul_(3.0)
    g = torch.Generator().manual_seed(7)
    feats = (torch.randn(4, 29, 24, generator=g) * 2).requires_grad_()  # varied rows: every case occurs
    targets = torch.randint(0, V, (4, 29), generator=g)
    targets[0, :5] = -100
    loss, correct, count = model.head_loss(feats, targets)
    grads = torch.autograd.grad(loss, list(model.adaptive.parameters()) + [feats], retain_graph=True)

    x = feats.reshape(-1, feats.size(-1))
    lp = full_log_probs_by_hand(model, x)
    t = targets.reshape(-1)
    valid = t != -100
    ref = torch.nn.functional.nll_loss(lp, t, ignore_index=-100)
    ref_grads = torch.autograd.grad(ref, list(model.adaptive.parameters()) + [feats])
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
    full_argmax = lp.argmax(-1)
    assert int(count) == int(valid.sum())
    assert int(correct) == int(((full_argmax == t) & valid).sum())
    # both cases of the exact count occur here: head argmax a cluster, full argmax a shortlist token
    head_arg = (x @ model.adaptive.head.weight.T + model.adaptive.head.bias).argmax(-1)
    shortlist = model.adaptive_rank[full_argmax] < 6
    assert bool(((head_arg >= 6) & shortlist).any()) and bool(((head_arg >= 6) & ~shortlist).any())
    assert bool((head_arg < 6).any())
    # and the count is right where it matters: make every target its row's full argmax
    _, correct, _ = model.head_loss(feats, full_argmax.view(4, 29))
    assert int(correct) == 4 * 29


def test_correct_count_on_a_trained_model():
    """A model trained a little, so that the targets are often the argmax (the count is not trivially 0)."""
    model = _model(1)
    ids = torch.arange(V).repeat(4)[None]  # a cycle: learnable
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(40):
        feats, _, _ = model.features_train(ids[:, :-1])
        loss, correct, count = model.head_loss(feats, ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        lp = full_log_probs_by_hand(model, feats.reshape(-1, feats.size(-1)))
    assert int(correct) == int((lp.argmax(-1) == ids[0, 1:]).sum()) > 0


def test_the_clusters_follow_the_frequency_order():
    model = RecurrentLM(V, embedding_dim=8, hidden_size=16, num_layers=1, output="adaptive", adaptive_cutoffs=[6, 20])
    assert torch.equal(model.adaptive_rank, torch.arange(V))  # before training: the ids' own order
    counts = np.zeros(V, dtype=np.int64)
    counts[[40, 3, 59]] = [100, 50, 50]  # ties: by id
    model.set_frequency_order(counts)
    assert model.adaptive_rank[[40, 3, 59]].tolist() == [0, 1, 2]
    assert sorted(model.adaptive_rank.tolist()) == list(range(V))
    with pytest.raises(ValueError, match="token counts for 5 ids, but the vocabulary has 60"):
        model.set_frequency_order(np.ones(5))


def test_a_small_model_gets_projections_at_least_one_wide():
    model = RecurrentLM(V, embedding_dim=8, hidden_size=8, num_layers=1, output="adaptive", adaptive_cutoffs=[6, 20])
    assert [down.out_features for down, _ in model.adaptive.tail] == [2, 1]  # 8 / 4, max(1, 8 / 16)
    lp, _ = model(torch.randint(0, V, (1, 5)))
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 5), atol=1e-5)


def test_default_cutoffs_scale_with_the_vocabulary():
    assert default_cutoffs(33278) == [1997, 9983]  # WikiText-2
    assert default_cutoffs(10) == [1, 3] and default_cutoffs(2) == [1]
    for v in (2, 3, 7, 65, 1000, 267735):
        RecurrentLM(v, embedding_dim=8, hidden_size=16, num_layers=1, output="adaptive")  # builds


@pytest.mark.parametrize("bad,message", [
    ({"adaptive_cutoffs": [20, 6]}, "model.adaptive_cutoffs must be increasing whole numbers from 1 to vocab_size - 1 = 59"),
    ({"adaptive_cutoffs": [6, 60]}, "model.adaptive_cutoffs must be increasing"),
    ({"adaptive_cutoffs": [0, 6]}, "model.adaptive_cutoffs must be increasing"),
    ({"adaptive_cutoffs": [6, 6]}, "model.adaptive_cutoffs must be increasing"),
    ({"adaptive_cutoffs": []}, "model.adaptive_cutoffs must be increasing"),
    ({"adaptive_div_value": 0}, "model.adaptive_div_value must be a number > 0"),
    ({"tie_weights": True, "embedding_dim": 24}, "model.tie_weights=true does not combine with model.output=adaptive"),
    ({"output": "hierarchical"}, "model.output must be 'full' or 'adaptive'"),
])
def test_bad_settings_are_one_line(bad, message):
    cfg = dict(embedding_dim=12, hidden_size=24, num_layers=1, output="adaptive", adaptive_cutoffs=[6, 20], **{})
    cfg.update(bad)
    with pytest.raises(ValueError, match=message) as err:
        RecurrentLM(V, **cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("decoder", ["greedy", "sample", "top_k", "nucleus", "min_p", "typical", "epsilon", "eta",
                                     "beam", "beam_sample", "diverse_beam", "contrastive"])
def test_every_decoder_generates_from_the_log_probabilities(decoder):
    model = _model(2).eval()
    torch.manual_seed(0)
    prompt = [[1, 2, 3, 4], [5, 6]]
    out = DECODERS.build({"name": decoder}).generate(model, prompt, max_new_tokens=6)
    assert len(out.sequences) == 2 and all(0 <= t < V for s in out.sequences for t in s)
    if decoder == "greedy":  # the argmax of the full log-probabilities, step by step
        with torch.no_grad():
            lp, state = model.prefill(torch.tensor([prompt[0]]))
            want = []
            for _ in range(6):
                want.append(int(lp.argmax(-1)))
                lp, state = model.step(torch.tensor(want[-1:]), state)
        assert out.sequences[0][:6] == want[:len(out.sequences[0][:6])]
