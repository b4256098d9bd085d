"""blur_adv: differentiable blur kernels, blur metrics and blur robustness for JAX classifiers."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10,<0.11",
    "flax>=0.12,<0.13",
    "optax>=0.2.7,<0.3",
    "orbax-checkpoint>=0.12,<0.13",
    "ml-collections>=1.0,<2",
    "absl-py>=2.1,<3",
    "numpy>=2.0,<3",
    "scipy>=1.13,<2",
    "dm-pix>=0.4.4,<0.5",
    "clu>=0.0.12,<0.1",
    "tensorboard>=2.19,<2.22",
    "tensorflow-cpu>=2.20,<2.22",
    "tensorflow-datasets>=4.9.9,<4.10",
    # The input pipeline (blur_adv/data.py); TFDS's as_data_source() reads ArrayRecord files.
    "grain>=0.2.18,<0.3",
    "array-record>=0.8,<0.9",
    "importlib_resources>=6",
    "scikit-learn>=1.5,<2",  # bundled `digits` dataset
    "scikit-image>=0.25,<0.27",  # bundled photos for demos and tests
    "matplotlib>=3.9,<4",
    "pillow>=10",
]

setup(
    name="blur_adv",
    version="0.1.0",
    description=__doc__,
    packages=find_packages(include=["blur_adv", "blur_adv.*"]),
    # The C++ blur loops are compiled on first use (blur_adv/ops/native), so ship the source.
    package_data={"blur_adv.ops.native": ["*.cc"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4",
                 # Reference corruptions (tests only; brings opencv-python).
                 "imagecorruptions==1.1.2"],
        # PyTorch is only a peer in the benchmarks; 2.13.0 is the CPU build available offline here.
        "bench": ["torch==2.13.0"],
    },
)
