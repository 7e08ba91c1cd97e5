import math

import pytest
import torch

from inrcodec.models.network import ModulatedSiren, cos, sin_

EPS32 = float(torch.finfo(torch.float32).eps)


def test_output_shapes_shared_and_batched_coords():
    net = ModulatedSiren(dim_in=2, dim_out=3, width=16, depth=3, latent_dim=5)
    lat = torch.randn(4, 5)
    assert net(torch.rand(10, 2), lat).shape == (4, 10, 3)
    assert net(torch.rand(4, 10, 2), lat).shape == (4, 10, 3)


def test_one_linear_map_gives_all_shifts():
    net = ModulatedSiren(dim_in=1, dim_out=1, width=8, depth=4, latent_dim=3)
    assert net.latent_to_modulations.in_features == 3
    assert net.latent_to_modulations.out_features == 4 * 8
    net_scale = ModulatedSiren(dim_in=1, dim_out=1, width=8, depth=4, latent_dim=3, scale_modulations=True)
    assert net_scale.latent_to_modulations.out_features == 2 * 4 * 8


def test_siren_initialisation_bounds():
    torch.manual_seed(0)
    net = ModulatedSiren(dim_in=3, dim_out=1, width=64, depth=3, latent_dim=4, w0=50.0)
    assert net.hidden[0].weight.abs().max() <= 1.0 / 3
    bound = math.sqrt(6.0 / 64) / 50.0
    for layer in list(net.hidden)[1:]:
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.5 * bound  # really uniform over the range, not zero


def test_hidden_layer_is_sine_of_shifted_preactivation():
    torch.manual_seed(0)
    net = ModulatedSiren(dim_in=1, dim_out=1, width=4, depth=1, latent_dim=2, w0=7.0)
    x = torch.rand(5, 1)
    z = torch.randn(1, 2)
    shift = net.latent_to_modulations(z)
    h = torch.sin(7.0 * (net.hidden[0](x) + shift))
    expected = net.output(h)
    assert torch.allclose(net(x, z)[0], expected, atol=1e-6)


def test_latent_changes_output_and_zero_latent_is_base():
    net = ModulatedSiren(dim_in=2, dim_out=1, width=16, depth=2, latent_dim=4)
    x = torch.rand(20, 2)
    base = net(x, torch.zeros(1, 4))
    assert not torch.allclose(base, net(x, torch.ones(1, 4)))


def test_bad_shapes_raise():
    net = ModulatedSiren(dim_in=2, dim_out=1, width=8, depth=2, latent_dim=4)
    with pytest.raises(ValueError, match="latents"):
        net(torch.rand(3, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="coords"):
        net(torch.rand(3, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        ModulatedSiren(dim_in=0, dim_out=1)


@pytest.mark.parametrize("coords_shape", [(10, 3), (4, 10, 3)])
def test_decoding_without_a_graph_computes_what_the_graph_does(coords_shape):
    """Decoding (no graph) adds the shifts and takes the sines in place (numpy's sine on a CPU):
    the same arithmetic up to the sine's last bit, for shared (P, d) and per-item (B, P, d)
    coordinates."""
    torch.manual_seed(1)
    net = ModulatedSiren(dim_in=3, dim_out=2, width=16, depth=3, latent_dim=5)
    coords, lat = torch.rand(coords_shape) * 2 - 1, torch.randn(4, 5)
    with torch.enable_grad():
        graph = net(coords, lat)
    with torch.no_grad():
        fast = net(coords, lat)
    assert fast.shape == (4, 10, 2)
    torch.testing.assert_close(fast, graph, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_sine_outside_autograd_is_within_a_bit_of_torchs(threads):
    """``sin_`` and ``cos`` (numpy's in a one-threaded thread, torch's with several) stay within
    about one float32 eps of the true ones over the arguments a SIREN's hidden layers see (``w0``
    times a pre-activation: tens of radians), in place for ``sin_`` and into ``out`` for ``cos``;
    other dtypes keep torch's."""
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.linspace(-200.0, 200.0, 400_001)
        want_sin, want_cos = torch.sin(x.double()), torch.cos(x.double())
        y = x.clone()
        assert sin_(y) is y
        assert float((y.double() - want_sin).abs().max()) <= 2 * EPS32
        out = torch.empty_like(x)
        assert cos(x, out=out) is out
        assert float((out.double() - want_cos).abs().max()) <= 2 * EPS32
        if threads > 1:
            assert torch.equal(y, torch.sin(x)) and torch.equal(out, torch.cos(x))
        z = x.double()
        assert torch.equal(sin_(z.clone()), torch.sin(z))
    finally:
        torch.set_num_threads(own)
