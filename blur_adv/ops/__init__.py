"""The blur library: pure JAX functions of arrays, usable without the training system.

kernels (families, their names in `families`, their search parametrization in `family_params`),
blur (with its strategies and the `native` C++ loops), measures (SSIM and no-reference blur
measures), budget (the SSIM budget), augment, corruptions (CIFAR-10-C / ImageNet-C blurs),
deblur (classical and blind deconvolution) and attacks (worst-case kernels under a budget).
"""
