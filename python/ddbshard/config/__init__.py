"""The config stage: one TOML file describes a migration, and every command reads it.

- model.py: what a checked config holds (frozen dataclasses) and the limits of its values;
- load.py: reading and checking the TOML (local or s3://), every refusal one line;
- spec.py: the typed spec the Rust core takes, built from the model.

It sits below every stage that runs a job (split, catchup, compare) and above io (it checks
paths and URIs): it imports nothing from the stages that use it.
"""

from ddbshard.config.load import load_config, parse_config
from ddbshard.config.model import (
    MAX_SHARDS,
    GsiConfig,
    OutputConfig,
    SplitConfig,
    TableConfig,
    TargetConfig,
    auto_shards,
)
from ddbshard.config.spec import CoreSpec, TargetSpec, build_core_spec

__all__ = [
    "MAX_SHARDS",
    "CoreSpec",
    "GsiConfig",
    "OutputConfig",
    "SplitConfig",
    "TableConfig",
    "TargetConfig",
    "TargetSpec",
    "auto_shards",
    "build_core_spec",
    "load_config",
    "parse_config",
]
