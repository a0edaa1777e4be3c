"""PainChain Kubernetes connector: watches clusters, posts significant changes to PainChain."""
from setuptools import find_packages, setup

setup(
    name="painchain-kubernetes-connector",
    version="0.1.0",
    description="PainChain connector that watches Kubernetes clusters and posts significant changes",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["painchain_connector", "painchain_connector.*"]),
    # --demo builds its kube-apiserver with this script when the cached binary is missing
    package_data={"painchain_connector.demo": ["build.sh"]},
    install_requires=[
        "gevent>=24.2",
        "kubernetes>=37,<38",
        "requests>=2.31,<3",
        "marshmallow>=4,<5",
        "loguru>=0.7,<0.8",
        "prometheus-client>=0.20,<1",
        "PyYAML>=6",
        # the watch path decodes every event: orjson is the maintained fast JSON codec
        "orjson>=3.9",
        # watch events decode straight into typed Structs (only the fields detection
        # reads), and outgoing events are encoded by it: the maintained typed codec
        "msgspec>=0.18",
    ],
    extras_require={
        # apispec generates the published JSON Schemas from the marshmallow schemas
        "schemas": ["apispec>=6.8,<7"],
    },
    entry_points={"console_scripts": ["painchain-connector=painchain_connector.__main__:main"]},
    classifiers=["Programming Language :: Python :: 3", "Framework :: gevent"],
)
