"""NT-ASGD: the trigger, the running average, and a state_dict round trip."""
import pytest
import torch

from lstm_pipeline.training.ntasgd import NTASGD


def quadratic_steps(opt, p, n, target):
    iterates = []
    for _ in range(n):
        opt.zero_grad()
        ((p - target) ** 2).sum().backward()
        opt.step()
        iterates.append(p.detach().clone())
    return iterates


def test_trigger_follows_awd_rule():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = NTASGD([p], lr=0.1, nonmono=2)
    assert [opt.observe(v) for v in (5.0, 4.0, 3.0, 3.5)] == [False] * 4  # 3.5 > min(5, 4)? no: min=4
    assert not opt.averaging
    assert opt.observe(4.5)  # 4.5 > min(history[:-2]) = min(5, 4, 3) = 3
    assert opt.averaging and opt.param_groups[0]["val_history"] == [5.0, 4.0, 3.0, 3.5, 4.5]
    assert not opt.observe(1.0)  # switches once


def test_plain_sgd_before_switch_then_running_average():
    torch.manual_seed(0)
    target = torch.randn(3)
    p = torch.nn.Parameter(torch.zeros(3))
    q = torch.nn.Parameter(torch.zeros(3))
    opt, ref = NTASGD([p], lr=0.1, weight_decay=0.01, nonmono=0), torch.optim.SGD([q], lr=0.1, weight_decay=0.01)
    a = quadratic_steps(opt, p, 3, target)
    b = quadratic_steps(ref, q, 3, target)
    assert torch.equal(a[-1], b[-1]) and opt.averaged() == {}
    assert opt.observe(10.0)  # nonmono=0: average from the first check
    its = quadratic_steps(opt, p, 4, target)
    assert torch.allclose(opt.averaged()[p], torch.stack(its).mean(0), atol=1e-6)
    raw = p.detach().clone()
    opt.swap_averaged()
    assert torch.allclose(p, torch.stack(its).mean(0), atol=1e-6)
    opt.swap_averaged()
    assert torch.equal(p, raw)


def test_state_dict_round_trip_keeps_switch_and_average():
    target = torch.ones(2)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = NTASGD([p], lr=0.1, nonmono=0)
    quadratic_steps(opt, p, 2, target)
    opt.observe(1.0)
    quadratic_steps(opt, p, 3, target)
    sd = opt.state_dict()
    p2 = torch.nn.Parameter(p.detach().clone())
    opt2 = NTASGD([p2], lr=0.1, nonmono=0)
    opt2.load_state_dict(sd)
    assert opt2.averaging and opt2.param_groups[0]["switch_step"] == 2
    a = quadratic_steps(opt, p, 2, target)
    b = quadratic_steps(opt2, p2, 2, target)
    assert torch.equal(a[-1], b[-1]) and torch.equal(opt.averaged()[p], opt2.averaged()[p2])


def test_bad_settings():
    with pytest.raises(ValueError, match="nonmono"):
        NTASGD([torch.nn.Parameter(torch.zeros(1))], nonmono=-1)
