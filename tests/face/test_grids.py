import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inrcodec.grids import CartesianGrid, PatchPartition, SphericalGrid, random_patch_starts


def test_spherical_embedding_values():
    g = SphericalGrid(lat=[-90.0, 0.0, 45.0], lon=[0.0, 90.0, 180.0])
    xyz = g.coordinates()
    assert xyz.shape == (3, 3, 3)
    np.testing.assert_allclose(xyz[0, 0], [0, 0, -1], atol=1e-6)  # south pole
    np.testing.assert_allclose(xyz[1, 1], [0, 1, 0], atol=1e-6)  # equator, 90E
    np.testing.assert_allclose(xyz[1, 2], [-1, 0, 0], atol=1e-6)  # equator, dateline
    s = np.sqrt(0.5)
    np.testing.assert_allclose(xyz[2, 0], [s, 0, s], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=-1), 1.0, atol=1e-6)


def test_spherical_uses_actual_values_not_counts():
    regional = SphericalGrid(lat=[40.0, 50.0], lon=[-10.0, 0.0, 10.0])
    other = SphericalGrid(lat=[-10.0, 0.0], lon=[100.0, 110.0, 120.0])
    assert regional.shape == other.shape
    assert not np.allclose(regional.coordinates(), other.coordinates())
    # 0..360 and -180..180 longitudes are the same places
    a = SphericalGrid(lat=[10.0], lon=[350.0]).coordinates()
    b = SphericalGrid(lat=[10.0], lon=[-10.0]).coordinates()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_regular_global_grid_cell_centres():
    g = SphericalGrid.regular_global(4, 8)
    assert g.lat == (-67.5, -22.5, 22.5, 67.5)
    assert g.lon[1] == 45.0


def test_spherical_rejects_bad_latitudes():
    with pytest.raises(ValueError, match="latitudes"):
        SphericalGrid(lat=[95.0], lon=[0.0])
    with pytest.raises(ValueError, match="finite"):
        SphericalGrid(lat=[np.nan], lon=[0.0])


def test_cartesian_grid_range():
    c = CartesianGrid((5, 3), extent=5.0).coordinates()
    assert c.shape == (5, 3, 2)
    assert c[..., 0].min() == -5.0 and c[..., 0].max() == 5.0
    np.testing.assert_allclose(c[0, :, 1], [-5, 0, 5])
    assert CartesianGrid((1,)).coordinates().tolist() == [[0.0]]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 13), min_size=1, max_size=3),
    patch=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    lead=st.integers(0, 2),
)
def test_partition_round_trip_odd_shapes(shape, patch, lead):
    shape = tuple(shape)
    patch = tuple(patch[: len(shape)])
    part = PatchPartition(shape, patch)
    a = np.random.default_rng(0).normal(size=(2,) * lead + shape)
    p = part.extract(a)
    assert p.shape == (2,) * lead + (part.num_patches,) + part.patch_shape
    np.testing.assert_array_equal(part.assemble(p), a)
    # every cell is covered by some patch
    covered = np.zeros(shape, bool)
    for s in part.starts:
        covered[tuple(slice(o, o + q) for o, q in zip(s, part.patch_shape))] = True
    assert covered.all()


def test_partition_with_trailing_coordinate_axis():
    part = PatchPartition((7, 9), (4, 4))
    coords = SphericalGrid.regular_global(7, 9).coordinates()
    p = part.extract(coords, trailing=1)
    assert p.shape == (part.num_patches, 4, 4, 3)
    np.testing.assert_array_equal(part.assemble(p, trailing=1), coords)


def test_partition_shape_mismatch():
    with pytest.raises(ValueError):
        PatchPartition((4, 4), (2,))
    with pytest.raises(ValueError):
        PatchPartition((4, 4), (2, 2)).extract(np.zeros((3, 5)))


def test_random_patch_starts_inside():
    rng = np.random.default_rng(1)
    s = random_patch_starts(rng, (10, 20), (4, 8), 500)
    assert s.shape == (500, 2)
    assert s[:, 0].max() == 6 and s[:, 1].max() == 12 and s.min() == 0


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 13), min_size=1, max_size=3),
    patch=st.lists(st.integers(1, 6), min_size=3, max_size=3),
)
def test_kept_groups_and_mask_are_exactly_what_assemble_keeps(shape, patch):
    shape = tuple(shape)
    part = PatchPartition(shape, tuple(patch[: len(shape)]))
    # every patch filled with its own index: assemble leaves each cell to the patch it keeps
    owner = part.assemble(np.broadcast_to(np.arange(part.num_patches).reshape((-1,) + (1,) * len(shape)),
                                          (part.num_patches,) + part.patch_shape))
    seen = np.full(shape, -1)
    groups = part.kept_groups()
    assert sorted(i for idx, _ in groups for i in idx.tolist()) == list(range(part.num_patches))
    for idx, kept in groups:
        assert all(1 <= q <= p for q, p in zip(kept, part.patch_shape))
        for i in idx.tolist():
            region = part.kept_slices(i, kept)
            assert (seen[region] == -1).all()  # no cell is evaluated twice
            seen[region] = i
    np.testing.assert_array_equal(seen, owner)
    # the same points as a mask: each patch's kept points, read back from a grid of point numbers,
    # are every point once, and each is the point its patch owns
    mask = part.kept_mask()
    assert mask.shape == (part.num_patches,) + part.patch_shape
    numbers = part.extract(np.arange(math.prod(shape)).reshape(shape))
    assert sorted(numbers[mask].tolist()) == list(range(math.prod(shape)))
    np.testing.assert_array_equal(part.extract(owner) == np.arange(part.num_patches).reshape(
        (-1,) + (1,) * len(shape)), mask)
