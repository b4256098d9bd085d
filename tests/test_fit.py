"""Kernel justification: on synthetic pairs the true family ranks first, parameters recovered."""

import subprocess
import sys

import numpy as np
import pytest
import skimage
import skimage.data
import skimage.transform
from PIL import Image

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import families, family_params, kernels
from blur_adv.tools import fit

SIZE = 9
# Parameters in canonical form (angles in [0, pi), sigma_u >= sigma_v).
TRUTH = {
    "gaussian": {"sigma": 1.4},
    "anisotropic_gaussian": {"sigma_u": 1.8, "sigma_v": 0.8, "angle": 0.7},
    "defocus": {"radius": 2.6},
    "motion": {"length": 6.5, "angle": 2.4},
    "box": {"width": 3.6},
}


@pytest.fixture(scope="module")
def sharp():
  photos = [skimage.data.astronaut(), skimage.data.chelsea()]
  return np.stack([skimage.transform.resize(skimage.img_as_float(p), (36, 36), anti_aliasing=True)
                   for p in photos]).astype(np.float32)


def _synthesize(sharp, family, rng):
  """Blur with the true kernel, add sensor noise and quantize to 8 bits, like a real capture."""
  kernel = kernels.PARAMETRIC_FAMILIES[family][0](SIZE, *TRUTH[family].values())
  blurred = np.asarray(blur_lib.blur(sharp, kernel, padding="reflect"))
  blurred = blurred + rng.normal(0.0, 0.005, blurred.shape)
  return (np.round(np.clip(blurred, 0, 1) * 255) / 255).astype(np.float32)


def test_true_family_ranks_first_and_parameters_are_recovered(sharp):
  rng = np.random.default_rng(0)
  for family, truth in TRUTH.items():
    fits = fit.rank_families(sharp, _synthesize(sharp, family, rng), SIZE, steps=250)
    assert [f.family for f in fits][0] == family, fit.format_ranking(fits)
    assert sorted(f.family for f in fits) == sorted(families.FAMILIES)
    best = fits[0]
    for name, value in truth.items():
      np.testing.assert_allclose(best.params[name], value, rtol=0.05, err_msg=f"{family}.{name}")
    # The free-form reference fits at least about as well as the (penalized) winner.
    free = next(f for f in fits if f.family == "free_form")
    assert free.mse.mean() < 1.2 * best.mse.mean()


def test_canonical_parameters_identify_equal_kernels():
  a = kernels.anisotropic_gaussian(SIZE, 0.8, 2.2, 0.7 + np.pi / 2 + np.pi)
  values = family_params.canonical(
      "anisotropic_gaussian",
      {"sigma_u": 0.8, "sigma_v": 2.2, "angle": 0.7 + np.pi / 2 + np.pi})
  np.testing.assert_allclose([values["sigma_u"], values["sigma_v"], values["angle"]],
                             [2.2, 0.8, 0.7], rtol=1e-6)
  np.testing.assert_allclose(a, kernels.anisotropic_gaussian(SIZE, 2.2, 0.8, 0.7), atol=1e-6)


def test_parametrization_stays_inside_the_window():
  raw = 10.0 * np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
  for family in ("gaussian", "anisotropic_gaussian", "defocus", "motion", "box"):
    n = family_params.raw_shape(family, SIZE)[0]
    params = family_params.to_params(family, raw[:, :n], SIZE)
    for name, values in params.items():
      if name != "angle":
        assert (np.asarray(values) >= 0).all()
        assert (np.asarray(values) <= family_params.upper_bound(name, SIZE)).all()
    kernels_ = family_params.raw_to_kernels(family, raw[:, :n], SIZE)
    assert kernels_.shape == (64, SIZE, SIZE)


def test_bad_inputs(sharp):
  with pytest.raises(ValueError, match="family"):
    fit.fit_family(sharp, sharp, "zoom_blur", SIZE)
  with pytest.raises(ValueError, match="size"):
    fit.fit_family(sharp, sharp, "gaussian", 8)
  with pytest.raises(ValueError, match="sharp and blurred"):
    fit.fit_family(sharp, sharp[:, :30], "gaussian", SIZE)


def test_command_line_prints_ranking_and_writes_picture(sharp, tmp_path):
  blurred = _synthesize(sharp, "gaussian", np.random.default_rng(1))
  for name, images in (("sharp", sharp), ("blurred", blurred)):
    (tmp_path / name).mkdir()
    for i, image in enumerate(images):
      Image.fromarray((image * 255).round().astype(np.uint8)).save(tmp_path / name / f"{i}.png")
  out = tmp_path / "fit.png"
  result = subprocess.run(
      [sys.executable, "-m", "blur_adv.fit", f"--sharp={tmp_path / 'sharp'}",
       f"--blurred={tmp_path / 'blurred'}", f"--size={SIZE}", "--steps=150",
       "--families=box,gaussian,free_form", f"--out={out}"],
      capture_output=True, text=True, timeout=300, check=True)
  assert "| 1 | gaussian |" in result.stdout, result.stdout
  assert out.stat().st_size > 1000
