"""Each plasticity method's defining behaviour on tiny networks, and state round trips."""

from __future__ import annotations

import io
import math

import pytest
import torch

from streamcl.learning.network import MLP
from streamcl.learning.plasticity import (
    UPGD,
    ContinualBackprop,
    L2Init,
    ReDo,
    ShrinkPerturb,
    SpectralReg,
    build_methods,
    build_optimizer,
    dormant_mask,
    health,
    load_methods_state_dict,
    methods_state_dict,
    optimizer_kwargs,
)
from streamcl.settings import PlasticitySettings, load_settings

ALL = ("cbp", "redo", "shrink_perturb", "l2_init", "spectral")


def _tiny(seed: int = 0) -> MLP:
    return MLP(3, (4,), 2, seed=seed)


def _train(model: MLP, methods: list, steps: int, opt: torch.optim.Optimizer) -> None:
    gen = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        x = torch.randn(8, model.n_inputs, generator=gen)
        y = torch.randint(0, model.n_outputs, (8,), generator=gen)
        logits, acts = model.forward_with_activations(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        for m in methods:
            term = m.loss_term(model)
            loss = loss if term is None else loss + term
        opt.zero_grad()
        loss.backward()
        opt.step()
        for m in methods:
            m.after_step(model, acts, step, opt)


def test_cbp_resets_lowest_utility_mature_unit_and_keeps_output() -> None:
    model = _tiny()
    with torch.no_grad():  # unit 2: constant activation 0.5, tiny outgoing weights
        model.hidden_layers[0].weight[2] = 0.0
        model.hidden_layers[0].bias[2] = 0.5
        model.head.weight[:, 2] = 1e-3
        model.hidden_layers[0].bias[[0, 1, 3]] = 1.0  # the others active and useful
        model.head.weight[:, [0, 1, 3]] = 1.0
    cbp = ContinualBackprop(replacement_rate=0.25, decay_rate=0.99, maturity_threshold=0)
    x = torch.rand(16, 3)
    before_out, acts = model.forward_with_activations(x)
    w_before = model.hidden_layers[0].weight.detach().clone()
    assert cbp.after_step(model, acts, step=1) == 1
    w_after = model.hidden_layers[0].weight.detach()
    assert not torch.equal(w_after[2], w_before[2])  # fresh incoming weights
    assert torch.equal(w_after[[0, 1, 3]], w_before[[0, 1, 3]])
    assert torch.all(model.head.weight[:, 2] == 0)  # zero outgoing weights
    assert torch.allclose(model(x), before_out, atol=1e-6)  # output unchanged


def test_cbp_respects_maturity_and_resets_optimizer_state() -> None:
    model = _tiny()
    cbp = ContinualBackprop(replacement_rate=0.5, maturity_threshold=3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _, acts = model.forward_with_activations(torch.rand(4, 3))
    assert [cbp.after_step(model, acts, s) for s in (1, 2, 3)] == [0, 0, 0]  # immature
    model(torch.rand(4, 3)).sum().backward()
    opt.step()
    sq = opt.state[model.hidden_layers[0].weight]["exp_avg_sq"]
    sq_mean = float(sq.mean())
    n = cbp.after_step(model, acts, 4, opt)
    assert n == 2
    idx = torch.nonzero(cbp.age[0] == 0).flatten()
    assert torch.all(opt.state[model.head.weight]["exp_avg"][:, idx] == 0)
    assert torch.all(opt.state[model.hidden_layers[0].weight]["exp_avg"][idx] == 0)
    # second moments of the fresh weights: the tensor's mean, not 0 (no huge first step)
    assert torch.allclose(sq[idx], torch.full_like(sq[idx], sq_mean))


def test_upgd_leaves_high_utility_weights_nearly_unchanged() -> None:
    w = torch.nn.Parameter(torch.tensor([10.0, 0.0, 1.0]))
    opt = UPGD([w], lr=0.1, weight_decay=0.0, beta_utility=0.0, sigma=0.0)
    w.grad = torch.tensor([-1.0, -1.0, 1.0])  # utilities -g*w: 10 (max), 0, -1
    before = w.detach().clone()
    opt.step()
    delta = (w.detach() - before).abs()
    sgd_delta = 0.1 * w.grad.abs()
    gate = delta / sgd_delta
    assert math.isclose(float(gate[0]), 1 - 1 / (1 + math.exp(-1)), rel_tol=1e-4)  # ~0.27
    assert math.isclose(float(gate[1]), 0.5, rel_tol=1e-4)
    assert float(gate[2]) > 0.52  # negative utility: more than half the step
    assert delta[0] < 0.6 * delta[1] and delta[0] < 0.6 * delta[2]


def test_upgd_protects_dominant_weight_under_noise_and_decay_runs() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([5.0, 0.01, 0.01]))
    opt = UPGD([w], lr=0.01, weight_decay=0.0, beta_utility=0.9, sigma=1.0)
    start = w.detach().clone()
    for _ in range(200):
        w.grad = torch.tensor([-0.2, 0.0, 0.0])  # only the first weight is useful
        opt.step()
    moved = (w.detach() - start).abs()
    # the useful weight got a gated step; the useless ones random-walked with full noise
    assert moved[0] < 0.3 * 200 * 0.01 * 0.2 + 0.1
    assert moved[1] > 0.02 and moved[2] > 0.02


def test_redo_finds_and_resets_forced_dormant_unit() -> None:
    model = _tiny()
    with torch.no_grad():
        model.hidden_layers[0].weight[1] = 0.0
        model.hidden_layers[0].bias[1] = -1.0  # unit 1 is dead on every input
        model.hidden_layers[0].bias[[0, 2, 3]] = 1.0  # the others are active
    redo = ReDo(tau=0.1, every=2)
    x = torch.rand(32, 3)
    _, acts = model.forward_with_activations(x)
    assert dormant_mask(acts[0], 0.1).tolist() == [False, True, False, False]
    assert redo.after_step(model, acts, step=1) == 0  # not yet its period
    assert redo.after_step(model, acts, step=2) == 1
    assert torch.all(model.head.weight[:, 1] == 0)
    assert model.hidden_layers[0].weight[1].abs().sum() > 0


def test_shrink_perturb_shrinks_on_schedule_and_on_drift() -> None:
    model = _tiny()
    sp = ShrinkPerturb(shrink=0.4, noise=0.0, every=5)
    w0 = model.hidden_layers[0].weight.detach().clone()
    assert sp.after_step(model, [], step=4) == 0
    assert torch.equal(model.hidden_layers[0].weight, w0)
    assert sp.after_step(model, [], step=5) == 4
    assert torch.allclose(model.hidden_layers[0].weight, 0.4 * w0)
    noisy = ShrinkPerturb(shrink=0.5, noise=0.01)
    noisy.on_drift(model)
    diff = model.hidden_layers[0].weight.detach() - 0.2 * w0
    assert 0 < float(diff.abs().max()) <= 0.01 / math.sqrt(3) + 1e-7


def test_l2_init_pulls_toward_init() -> None:
    model = _tiny()
    l2 = L2Init(model, strength=1.0)
    assert float(l2.loss_term(model)) == 0.0
    with torch.no_grad():
        model.head.weight += 1.0
    assert math.isclose(float(l2.loss_term(model)), model.head.weight.numel(), rel_tol=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(40):
        opt.zero_grad()
        l2.loss_term(model).backward()
        opt.step()
    assert float(l2.loss_term(model)) < 1e-3
    model.grow_outputs(3)  # growth: new weights anchor where they are
    assert l2.loss_term(model).shape == ()


def test_spectral_reg_penalises_large_top_singular_value() -> None:
    model = _tiny()
    spec = SpectralReg(strength=1.0, k=2)
    w = model.hidden_layers[0].weight
    with torch.no_grad():
        w.mul_(10.0)
    for _ in range(30):  # power iteration converges
        sigma = spec.top_singular_value("hidden_layers.0.weight", w)
    assert math.isclose(float(sigma), float(torch.linalg.matrix_norm(w.detach(), 2)), rel_tol=1e-3)
    big = float(spec.loss_term(model))
    opt = torch.optim.SGD([w], lr=1e-4)
    for _ in range(50):
        opt.zero_grad()
        spec.loss_term(model).backward()
        opt.step()
    assert float(torch.linalg.matrix_norm(w.detach(), 2)) < float(sigma)
    assert float(spec.loss_term(model)) < big


def test_health_metrics() -> None:
    model = _tiny()
    with torch.no_grad():
        model.hidden_layers[0].weight[0] = 0.0
        model.hidden_layers[0].bias[0] = -1.0
        model.hidden_layers[0].bias[1:] = 1.0
    logits, acts = model.forward_with_activations(torch.rand(64, 3))
    logits.sum().backward()
    h = health(model, acts)
    assert h["dormant_fraction_layer0"] == 0.25
    assert 1.0 <= h["effective_rank"] <= 3.0
    assert h["weight_magnitude"] > 0 and h["grad_norm"] > 0


@pytest.mark.parametrize("name", ["sgd", "adam", "upgd"])
def test_build_optimizer_by_name(name: str) -> None:
    model = _tiny()
    s = PlasticitySettings()
    opt = build_optimizer(name, model.parameters(), 0.01, **optimizer_kwargs(name, s))
    _train(model, [], 3, opt)
    assert opt.param_groups[0]["lr"] == 0.01
    with pytest.raises(ValueError):
        build_optimizer("rmsprop", model.parameters(), 0.01)


def test_settings_select_methods_and_upgd() -> None:
    s = load_settings(plasticity={"methods": ["cbp", "spectral"]}, learner={"optimizer": "upgd"})
    assert s.learner.optimizer == "upgd"
    names = [m.name for m in build_methods(s.plasticity, _tiny())]
    assert names == ["cbp", "spectral"]


def test_state_dict_round_trip_keeps_every_method_state() -> None:
    settings = PlasticitySettings(
        methods=ALL, cbp_maturity_threshold=1, cbp_replacement_rate=0.2, redo_every=3, sp_every=4
    )
    model = _tiny()
    methods = build_methods(settings, model)
    opt = build_optimizer("upgd", model.parameters(), 0.01, **optimizer_kwargs("upgd", settings))
    _train(model, methods, 6, opt)
    buf = io.BytesIO()
    torch.save({"methods": methods_state_dict(methods), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # tensors and plain data only
    fresh = build_methods(settings, _tiny(seed=5))
    load_methods_state_dict(fresh, saved["methods"])
    for a, b in zip(methods, fresh, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and sa
        for key in sa:
            _assert_same(sa[key], sb[key])
    opt2 = build_optimizer("upgd", model.parameters(), 0.01)
    opt2.load_state_dict(saved["opt"])
    assert torch.equal(
        opt2.state[model.head.weight]["avg_utility"], opt.state[model.head.weight]["avg_utility"]
    )


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b
