"""The kit's folders are imported under one namespace: contracts/ as `modelyard.contracts`,
infra/ as `modelyard.infra`, ml/ as `modelyard.ml`, pipelines/ as `modelyard.pipelines`.
pyproject.toml cannot prefix the packages it finds, hence these few lines."""

from setuptools import find_packages, setup

FOLDERS = ("contracts", "infra", "ml", "pipelines")

setup(
    packages=[f"modelyard.{name}" for name in find_packages(include=[f"{f}*" for f in FOLDERS])],
    package_dir={f"modelyard.{folder}": folder for folder in FOLDERS},
)
