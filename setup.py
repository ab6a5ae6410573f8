"""grm-jax: JAX/Flax implementation of GRM (CVPR 2023) for visual object tracking."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2",
    "orbax-checkpoint>=0.11",
    "grain>=0.2.18",
    "numpy>=1.26",
    "ml-collections>=1.0",
    # Headless OpenCV: identical resize arithmetic to opencv-python, but no GUI/Qt
    # libraries, so it installs on servers, TPU VMs and Colab without X11.
    "opencv-python-headless>=4.8",
    "absl-py>=2.0",
    "tqdm>=4.60",
    "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    "matplotlib>=3.7",    # success / precision plots
    # An ffmpeg binary with libx264 (no system install): track mode writes H.264 videos that
    # browsers and notebooks play (the PyPI OpenCV wheels have no H.264 encoder).
    "imageio-ffmpeg>=0.5",
    "flatbuffers>=24",    # jax.export serialization (python -m grm_jax.export)
]

setup(
    name="grm-jax",
    version="0.2.0",
    description="GRM (Generalized Relation Modeling) transformer tracker in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["grm_jax", "grm_jax.*", "data_pipelines", "data_pipelines.*",
                                    "convert_weights", "convert_weights.*"]) + ["grm_jax.configs"],
    # launch.py wires the three packages together (docs/PACKAGES.md); `grm-jax` runs its main().
    py_modules=["launch"],
    # The top-level configs/ folder is installed as grm_jax.configs (bundled run configs).
    package_dir={"grm_jax.configs": "configs"},
    package_data={"grm_jax": ["datasets/tables/*.json", "datasets/splits/*.txt"]},
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["grm-jax=launch:main", "grm-jax-vot=grm_jax.vot:main"]},
    extras_require={
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        # The converters never import torch (zip and legacy .pth files are read without it);
        # with torch installed the tests also build their checkpoint files with torch.save.
        "convert": ["torch==2.13.0"],
        # Packing datasets into ArrayRecord shards (python -m data_pipelines.pack) is the only user
        # of tensorflow-datasets (and its pyarrow); reading packs needs only grain.
        "pack": ["tensorflow-datasets>=4.9"],
        # VOT toolkit + the TraX server our tracker uses (python -m grm_jax.vot). vot-toolkit 0.9.0
        # fails at import with attributee 0.1.10; it also pulls opencv-python next to our headless
        # OpenCV, so README installs the toolkit in its own venv (tests/test_vot.py does the same).
        "vot": ["vot-toolkit==0.9.0", "attributee>=0.1.8,<0.1.10", "vot-trax>=4.0.1"],
        # ONNX export (python -m grm_jax.export --format onnx). jax2onnx 0.17 pins
        # orbax-checkpoint<0.11.37: install into its own venv (README "Deploying", tests/test_onnx.py).
        "onnx": ["jax2onnx>=0.17.1,<0.18", "onnxruntime>=1.24"],
        "test": ["tensorflow-datasets>=4.9", "wheel", "pytest>=7", "pytest-xdist>=3", "nbformat>=5", "nbclient>=0.9", "ipykernel>=6", "got10k>=0.1.3", "shapely>=2", "six", "vot-trax>=4.0.1"],
    },
)
