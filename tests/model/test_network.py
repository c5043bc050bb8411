"""The seed text's three cells, written out by hand, against torch's modules with the same weights.

Each hand-written cell reads its weights from the torch module (`weight_ih_l{k}`, `weight_hh_l{k}`,
`bias_ih_l{k}`, `bias_hh_l{k}`, split into torch's gate order: LSTM i, f, g, o; GRU r, z, n) and
steps through a sequence in float64. RNN and LSTM match the seed's equations exactly; for GRU the
tests pin down torch's variant and show that it departs from the seed's form in one place only:
the reset gate is applied after the hidden matmul instead of before it.
"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from forecast.model.config import InputLayout, NetworkConfig
from forecast.model.network import Ensemble, Forecaster, StaticEmbedding, build_network, forecast_loss
from tests.factories import perturbed_network

ATOL = 1e-6
N_FEATURES, HIDDEN, STEPS, BATCH = 3, 5, 12, 4


@pytest.fixture
def sequence() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, STEPS, N_FEATURES, generator=generator, dtype=torch.float64)  # (B, T, F)


def _layer_weights(module: nn.RNNBase, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        getattr(module, f"weight_ih_l{layer}").detach(),
        getattr(module, f"weight_hh_l{layer}").detach(),
        getattr(module, f"bias_ih_l{layer}").detach(),
        getattr(module, f"bias_hh_l{layer}").detach(),
    )


def _matvec(weight: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """weight (out, in), vector (B, in) -> (B, out): the seed's W x for a batch."""
    return vector @ weight.T


# --- the seed's cells, one time step each -------------------------------------------------------


def seed_rnn_step(
    x: torch.Tensor, h: torch.Tensor, U: torch.Tensor, W: torch.Tensor, b_h: torch.Tensor
) -> torch.Tensor:
    """h_t = tanh(U x_t + W h_{t-1} + b_h)."""
    return torch.tanh(_matvec(U, x) + _matvec(W, h) + b_h)


def seed_lstm_step(
    x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weights: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """i, f, o = sigmoid(W_x* x + W_h* h + b_*); g = tanh(W_xg x + W_hg h + b_g);
    c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t)."""
    w_ih, w_hh, b_ih, b_hh = weights
    W_xi, W_xf, W_xg, W_xo = w_ih.chunk(4)  # torch's gate order: i, f, g, o
    W_hi, W_hf, W_hg, W_ho = w_hh.chunk(4)
    # torch keeps two bias vectors per gate; the seed's b_* is their sum.
    b_i, b_f, b_g, b_o = (b_ih + b_hh).chunk(4)
    i = torch.sigmoid(_matvec(W_xi, x) + _matvec(W_hi, h) + b_i)
    f = torch.sigmoid(_matvec(W_xf, x) + _matvec(W_hf, h) + b_f)
    o = torch.sigmoid(_matvec(W_xo, x) + _matvec(W_ho, h) + b_o)
    g = torch.tanh(_matvec(W_xg, x) + _matvec(W_hg, h) + b_g)
    c_next = f * c + i * g
    return o * torch.tanh(c_next), c_next


def _gru_gates(x: torch.Tensor, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Reset r and update z (identical in torch and the seed), plus the candidate's pieces."""
    w_ih, w_hh, b_ih, b_hh = weights
    W_ir, W_iz, W_in = w_ih.chunk(3)  # torch's gate order: r, z, n
    W_hr, W_hz, W_hn = w_hh.chunk(3)
    b_ir, b_iz, b_in = b_ih.chunk(3)
    b_hr, b_hz, b_hn = b_hh.chunk(3)
    r = torch.sigmoid(_matvec(W_ir, x) + b_ir + _matvec(W_hr, h) + b_hr)
    z = torch.sigmoid(_matvec(W_iz, x) + b_iz + _matvec(W_hz, h) + b_hz)
    return r, z, W_in, b_in, W_hn, b_hn


def torch_variant_gru_step(x: torch.Tensor, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """torch's GRU: n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h_t = (1-z)*n + z*h_{t-1}."""
    r, z, W_in, b_in, W_hn, b_hn = _gru_gates(x, h, weights)
    n = torch.tanh(_matvec(W_in, x) + b_in + r * (_matvec(W_hn, h) + b_hn))
    return (1 - z) * n + z * h


def seed_gru_step(x: torch.Tensor, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The seed's GRU: g = tanh(W_xg x + W_hg (r*h_{t-1})); h_t = z*h_{t-1} + (1-z)*g.
    The seed has no biases; the tests compare it with a bias-free torch GRU (or with biases
    that only steer the gates)."""
    r, z, W_xg, b_in, W_hg, b_hn = _gru_gates(x, h, weights)
    g = torch.tanh(_matvec(W_xg, x) + b_in + _matvec(W_hg, r * h) + b_hn)
    return z * h + (1 - z) * g


def _unroll(step, inputs: torch.Tensor, hidden: int):  # type: ignore[no-untyped-def]
    """Run a one-step cell over (B, T, F) from a zero state; returns (B, T, hidden)."""
    h = torch.zeros(inputs.shape[0], hidden, dtype=inputs.dtype)
    outputs = []
    for t in range(inputs.shape[1]):
        h = step(inputs[:, t], h)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def _module(kind: type[nn.RNNBase], num_layers: int = 1, seed: int = 1, **kwargs: object) -> nn.RNNBase:
    torch.manual_seed(seed)
    return kind(N_FEATURES, HIDDEN, num_layers=num_layers, batch_first=True, **kwargs).double()


# --- RNN ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_rnn_computes_the_seed_elman_equations(sequence: torch.Tensor, num_layers: int) -> None:
    rnn = _module(nn.RNN, num_layers, nonlinearity="tanh")
    torch.manual_seed(2)
    readout = nn.Linear(HIDDEN, 2).double()  # O_t = V h_t + b_o

    layer_input = sequence
    for layer in range(num_layers):
        U, W, b_ih, b_hh = _layer_weights(rnn, layer)
        layer_input = _unroll(lambda x, h, U=U, W=W, b=b_ih + b_hh: seed_rnn_step(x, h, U, W, b), layer_input, HIDDEN)
    V, b_o = readout.weight.detach(), readout.bias.detach()
    expected_output = layer_input @ V.T + b_o  # (B, T, 2)

    with torch.no_grad():
        hidden_states, last = rnn(sequence)
        output = readout(hidden_states)
    torch.testing.assert_close(hidden_states, layer_input, atol=ATOL, rtol=0)
    torch.testing.assert_close(last[-1], layer_input[:, -1], atol=ATOL, rtol=0)
    torch.testing.assert_close(output, expected_output, atol=ATOL, rtol=0)


# --- LSTM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_lstm_computes_the_seed_lstm_equations(sequence: torch.Tensor, num_layers: int) -> None:
    lstm = _module(nn.LSTM, num_layers)
    layer_input = sequence
    last_cells = []
    for layer in range(num_layers):
        weights = _layer_weights(lstm, layer)
        h = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
        c = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
        outputs = []
        for t in range(STEPS):
            h, c = seed_lstm_step(layer_input[:, t], h, c, weights)
            outputs.append(h)
        layer_input = torch.stack(outputs, dim=1)
        last_cells.append(c)

    with torch.no_grad():
        hidden_states, (last_h, last_c) = lstm(sequence)
    torch.testing.assert_close(hidden_states, layer_input, atol=ATOL, rtol=0)
    torch.testing.assert_close(last_h[-1], layer_input[:, -1], atol=ATOL, rtol=0)
    torch.testing.assert_close(last_c, torch.stack(last_cells), atol=ATOL, rtol=0)


def test_lstm_gate_order_matters(sequence: torch.Tensor) -> None:
    """The check above is sharp: reading the chunks in the wrong order (i, f, o, g) misses."""
    lstm = _module(nn.LSTM)
    w_ih, w_hh, b_ih, b_hh = _layer_weights(lstm, 0)

    def swap(tensor: torch.Tensor) -> torch.Tensor:
        i, f, g, o = tensor.chunk(4)
        return torch.cat([i, f, o, g])

    wrong = (swap(w_ih), swap(w_hh), swap(b_ih), swap(b_hh))
    h = c = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
    for t in range(STEPS):
        h, c = seed_lstm_step(sequence[:, t], h, c, wrong)
    with torch.no_grad():
        hidden_states, _ = lstm(sequence)
    assert (hidden_states[:, -1] - h).abs().max() > 1e-2


# --- GRU ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_gru_computes_its_reset_after_variant(sequence: torch.Tensor, num_layers: int) -> None:
    gru = _module(nn.GRU, num_layers)
    layer_input = sequence
    for layer in range(num_layers):
        weights = _layer_weights(gru, layer)
        layer_input = _unroll(lambda x, h, w=weights: torch_variant_gru_step(x, h, w), layer_input, HIDDEN)
    with torch.no_grad():
        hidden_states, last = gru(sequence)
    torch.testing.assert_close(hidden_states, layer_input, atol=ATOL, rtol=0)
    torch.testing.assert_close(last[-1], layer_input[:, -1], atol=ATOL, rtol=0)


def _bias_free_gru() -> tuple[nn.GRU, tuple[torch.Tensor, ...]]:
    """A GRU without biases, as the seed writes it; zero biases keep the hand-written cells uniform."""
    gru = _module(nn.GRU, bias=False)
    zeros = torch.zeros(3 * HIDDEN, dtype=torch.float64)
    weights = (gru.weight_ih_l0.detach(), gru.weight_hh_l0.detach(), zeros, zeros)
    return gru, weights


def test_seed_gru_form_departs_from_torch_once_the_state_is_nonzero(sequence: torch.Tensor) -> None:
    gru, weights = _bias_free_gru()
    with torch.no_grad():
        torch_states, _ = gru(sequence)
    seed_states = _unroll(lambda x, h: seed_gru_step(x, h, weights), sequence, HIDDEN)

    # Step 1 starts from h_0 = 0: r*(W h) = W(r*h) = 0, so the two forms agree there ...
    torch.testing.assert_close(seed_states[:, 0], torch_states[:, 0], atol=ATOL, rtol=0)
    # ... and from step 2 on they differ, by far more than rounding.
    assert (seed_states[:, 1:] - torch_states[:, 1:]).abs().max() > 1e-3


def test_seed_and_torch_gru_differ_only_in_where_the_reset_gate_goes(sequence: torch.Tensor) -> None:
    _, weights = _bias_free_gru()
    generator = torch.Generator().manual_seed(3)
    h_prev = torch.randn(BATCH, HIDDEN, generator=generator, dtype=torch.float64)
    x = sequence[:, 0]
    r, z, W_xg, _, W_hg, _ = _gru_gates(x, h_prev, weights)

    torch_step = torch_variant_gru_step(x, h_prev, weights)
    seed_step = seed_gru_step(x, h_prev, weights)
    assert (torch_step - seed_step).abs().max() > 1e-3

    # Same gates, same state update: putting torch's candidate into the seed's update
    # (h = z*h + (1-z)*g) reproduces torch, so the candidate is the whole difference ...
    n_torch = torch.tanh(_matvec(W_xg, x) + r * _matvec(W_hg, h_prev))  # reset after the matmul
    torch.testing.assert_close(z * h_prev + (1 - z) * n_torch, torch_step, atol=1e-12, rtol=0)
    g_seed = torch.tanh(_matvec(W_xg, x) + _matvec(W_hg, r * h_prev))  # reset before the matmul
    torch.testing.assert_close(z * h_prev + (1 - z) * g_seed, seed_step, atol=1e-12, rtol=0)
    # ... and within it, r*(W h) is diag(r) W h while the seed's W (r*h) is W diag(r) h.
    assert (r * _matvec(W_hg, h_prev) - _matvec(W_hg, r * h_prev)).abs().max() > 1e-3


def test_seed_and_torch_gru_agree_when_the_reset_gate_is_all_ones(sequence: torch.Tensor) -> None:
    """With r = 1 everywhere, r*(W h + b) = W(r*h) + b: the forms coincide, biases included."""
    gru = _module(nn.GRU)
    with torch.no_grad():
        gru.bias_ih_l0[:HIDDEN] = 40.0  # reset gate's bias: sigmoid(40) == 1.0 in float64
    weights = _layer_weights(gru, 0)
    r, *_ = _gru_gates(sequence[:, 0], torch.ones(BATCH, HIDDEN, dtype=torch.float64), weights)
    assert bool((r == 1.0).all())

    with torch.no_grad():
        torch_states, _ = gru(sequence)
    seed_states = _unroll(lambda x, h: seed_gru_step(x, h, weights), sequence, HIDDEN)
    torch.testing.assert_close(seed_states, torch_states, atol=ATOL, rtol=0)


# --- the forecaster -------------------------------------------------------------------------------


CHANNELS = 3  # the scaled value and one sine/cosine pair


def _config(arch: str, **overrides: object) -> NetworkConfig:
    fields: dict[str, object] = {
        "arch": arch,
        "input_size": 16,
        "horizon": 6,
        "hidden_size": 8,
        "num_layers": 2,
        "dropout": 0.2,
    }
    fields.update(overrides)
    return NetworkConfig.model_validate(fields)


@pytest.fixture
def windows() -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    return torch.randn(7, 16, 3, generator=generator)  # (B, L, F)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("linear_skip", [True, False])
def test_untrained_forecaster_is_exactly_the_naive_forecast(
    windows: torch.Tensor, arch: str, linear_skip: bool
) -> None:
    torch.manual_seed(5)
    network = Forecaster(_config(arch, linear_skip=linear_skip), CHANNELS)
    for training in (False, True):  # dropout is on in train mode and must not break it
        network.train(training)
        with torch.no_grad():
            forecast = network(windows)
        assert forecast.shape == (7, 6)
        naive = windows[:, -1, :1].expand(7, 6)  # last scaled value, repeated
        assert torch.equal(forecast, naive)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_config_round_trips_through_json_and_rebuilds_the_network(windows: torch.Tensor, arch: str) -> None:
    config = _config(arch, linear_skip=True)
    torch.manual_seed(6)
    original = Forecaster(config, CHANNELS).eval()
    with torch.no_grad():  # move off the naive start so the comparison below is not trivial
        for parameter in original.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))

    restored_config = NetworkConfig.model_validate_json(config.model_dump_json())
    assert restored_config == config
    rebuilt = Forecaster(restored_config, CHANNELS).eval()
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(rebuilt(windows), original(windows))
        assert not torch.equal(original(windows), windows[:, -1, :1].expand(7, 6))


def test_a_different_config_does_not_load_the_weights() -> None:
    """Strict loading is a real check: a network of another size refuses the state dict."""
    original = Forecaster(_config("lstm"), CHANNELS)
    other = Forecaster(_config("lstm", hidden_size=9), CHANNELS)
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict(original.state_dict(), strict=True)


def test_loss_is_zero_for_a_perfect_forecast(windows: torch.Tensor) -> None:
    network = Forecaster(_config("gru"), CHANNELS).eval()
    naive = windows[:, -1, :1].expand(7, 6)
    assert network.loss(windows, naive).item() == 0.0
    assert network.loss(windows, naive + 1.0).item() == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(("anchor_period", "segment_length"), [(1, 4), (4, 1), (4, 8), (16, 16)])
def test_an_untrained_forecaster_is_exactly_its_anchor_baseline(
    windows: torch.Tensor, arch: str, anchor_period: int, segment_length: int
) -> None:
    """Step h repeats the scaled value anchor_period steps before it: the seasonal naive for a
    season, the naive forecast for 1; whatever the encoder reads the window in."""
    config = _config(arch, anchor_period=anchor_period, segment_length=segment_length)
    network = Forecaster(config, CHANNELS).eval()
    with torch.no_grad():
        forecast = network(windows)
    steps = torch.arange(6)
    expected = windows[:, 16 - anchor_period + steps % anchor_period, 0]  # (B, H)
    assert torch.equal(forecast, expected)


def test_the_skip_alone_is_an_nlinear_forecaster(windows: torch.Tensor) -> None:
    network = Forecaster(_config("lstm", recurrent=False, anchor_period=4), CHANNELS)
    assert not any(name.startswith(("encoder", "head", "embed")) for name, _ in network.named_parameters())
    with torch.no_grad():
        network.skip.weight.fill_(0.01)  # type: ignore[union-attr]
        forecast = network(windows)
    anchor = windows[:, 12 + torch.arange(6) % 4, 0]
    scaled = windows[:, :, 0]
    expected = anchor + 0.01 * (scaled - scaled[:, -1:]).sum(dim=1, keepdim=True)
    torch.testing.assert_close(forecast, expected)


def test_segments_must_divide_the_window_and_the_anchor_fit_in_it() -> None:
    with pytest.raises(ValidationError, match="does not divide"):
        _config("gru", segment_length=5)
    with pytest.raises(ValidationError, match="longer than the input size"):
        _config("gru", anchor_period=17)
    with pytest.raises(ValidationError, match="needs the linear skip"):
        _config("gru", recurrent=False, linear_skip=False)


@pytest.mark.parametrize(("combine", "expected"), [("mean", 2.0), ("median", 1.5)])
def test_an_ensemble_combines_its_members_step_by_step(windows: torch.Tensor, combine: str, expected: float) -> None:
    config = _config("gru", ensemble=4, combine=combine, anchor_period=1, segment_length=4)
    ensemble = build_network(config, CHANNELS)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 4
    with torch.no_grad():
        for offset, member in zip((0.0, 1.0, 2.0, 5.0), ensemble.members, strict=True):
            member.head.bias.fill_(offset)  # type: ignore[union-attr]
        forecast = ensemble.eval()(windows)
    naive = windows[:, -1, :1].expand(7, 6)
    torch.testing.assert_close(forecast, naive + expected)
    assert set(ensemble.state_dict()) >= {f"members.{i}.head.bias" for i in range(4)}


@pytest.mark.parametrize(("loss", "expected"), [("mse", 4.0), ("mae", 2.0), ("mase", 2.0 * 0.5)])
def test_the_losses(loss: str, expected: float) -> None:
    forecast, target = torch.full((3, 2), 3.0), torch.ones(3, 2)
    weights = torch.full((3, 1), 0.5) if loss == "mase" else None
    assert forecast_loss(forecast, target, loss, weights).item() == pytest.approx(expected)  # type: ignore[arg-type]


# --- covariates ----------------------------------------------------------------------------------

LAYOUT = InputLayout(calendar=2, past=2, future=1, static_categories=(3,), static_numeric=1)
HORIZON = 6


def _covariate_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encoded inputs of a network with LAYOUT: the window (B, 16, 1 + 2 + 2 + 1), the known
    inputs over the horizon (B, 6, 2 + 1), static codes and a number (B, 2)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(7, 16, 1 + LAYOUT.past + LAYOUT.known_width, generator=generator)
    known = torch.randn(7, HORIZON, LAYOUT.known_width, generator=generator)
    static = torch.stack([torch.tensor([0.0, 1, 2, 0, 1, 2, 2]), torch.randn(7, generator=generator)], dim=1)
    return inputs, known, static


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("segment_length", [1, 4])
def test_an_untrained_forecaster_with_covariates_is_exactly_its_anchor(arch: str, segment_length: int) -> None:
    config = _config(arch, anchor_period=4, segment_length=segment_length, horizon_inputs=True)
    network = Forecaster(config, LAYOUT).eval()
    inputs, known, static = _covariate_inputs()
    with torch.no_grad():
        forecast = network(inputs, known, static)
    assert network.reads_horizon and network.static_embedding is not None
    assert torch.equal(forecast, inputs[:, 12 + torch.arange(HORIZON) % 4, 0])


def test_step_h_reads_the_horizons_inputs_of_step_h_only() -> None:
    """A forecast of the first h steps needs the future-known inputs of those h steps alone: the
    head's local MLP and the skip's per-step weights read step h's inputs for step h."""
    network = perturbed_network(_config("lstm", anchor_period=1, segment_length=4, horizon_inputs=True), LAYOUT)
    inputs, known, static = _covariate_inputs()
    changed = known.clone()
    changed[:, 3:] += 5.0  # steps 4 to 6 only
    with torch.no_grad():
        before, after = network.eval()(inputs, known, static), network(inputs, changed, static)
    torch.testing.assert_close(before[:, :3], after[:, :3], rtol=0, atol=0)
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_every_kind_of_covariate_moves_the_forecast() -> None:
    network = perturbed_network(_config("gru", anchor_period=1, segment_length=4, horizon_inputs=True), LAYOUT).eval()
    inputs, known, static = _covariate_inputs()
    with torch.no_grad():
        base = network(inputs, known, static)
        moved_past = inputs.clone()
        moved_past[:, :, 1] += 1.0
        other_category = static.clone()
        other_category[:, 0] = (other_category[:, 0] + 1) % 3
        for changed in (
            network(moved_past, known, static),
            network(inputs, known + 1.0, static),
            network(inputs, known, other_category),
        ):
            assert not torch.allclose(changed, base)


def test_a_network_without_covariates_has_the_parameters_it_always_had() -> None:
    """Versions written before covariates load into the same modules: no new parameter appears
    unless the version reads covariates or the horizon's inputs."""
    names = set(Forecaster(_config("lstm", anchor_period=1, segment_length=4, num_layers=1), CHANNELS).state_dict())
    assert names == {
        "embed.weight",
        "embed.bias",
        "encoder.weight_ih_l0",
        "encoder.weight_hh_l0",
        "encoder.bias_ih_l0",
        "encoder.bias_hh_l0",
        "head.weight",
        "head.bias",
        "skip.weight",
        "skip.bias",
    }


def test_the_unseen_bucket_starts_at_zero_and_is_trained_by_hiding_categories() -> None:
    """Training hides a series' category now and then (the unseen bucket, code 0, takes its
    place), so the bucket a request's new category falls into has been trained; evaluation never
    hides one."""
    embedding = StaticEmbedding(InputLayout(static_categories=(3,)))
    table = embedding.tables[0]
    assert torch.count_nonzero(table.weight[0]) == 0
    codes = torch.full((2000, 1), 2.0)  # every row category 2
    embedding.train()(codes).sum().backward()
    hidden = int(torch.count_nonzero(table.weight.grad[0])) > 0
    assert hidden and 0.05 < float(table.weight.grad[0, 0] / table.weight.grad[2, 0]) < 0.2
    with torch.no_grad():
        assert torch.equal(embedding.eval()(codes), table.weight[2].expand(2000, -1))
