"""The names of the kernel families and of their parameters, in one place.

Plain Python (no JAX), so configs and command-line tools can name families without importing the
library. `kernels.PARAMETRIC_FAMILIES` pairs each parametric family with its builder.
"""

# Parametric families and their continuous parameters in the builders' call order.
PARAMETERS = {
    "gaussian": ("sigma",),
    "anisotropic_gaussian": ("sigma_u", "sigma_v", "angle"),
    "defocus": ("radius",),
    "motion": ("length", "angle"),
    "box": ("width",),
}

# Every family the attacks, the adversary and the fitter search: the parametric ones, then the
# camera-shake path and the free-form kernel (a softmax over the window, the largest family).
FAMILIES = tuple(PARAMETERS) + ("motion_path", "free_form")

# What blur augmentation draws from unless configured (`augment`, `config.defense`).
DEFAULT_AUGMENT_FAMILIES = ("gaussian", "defocus", "motion")
