"""Settings: one dataclass filled from SEARCHCORE_* variables and matching CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from searchcore.errors import ConfigError

ENV_PREFIX = "SEARCHCORE_"
LIBRARY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
TEXT_INDEX_SUFFIX = "__text"  # a library's text index is the collection of its name with this suffix
LIVE_SUFFIX = "__live"  # a reindexed library is reached through the Milvus alias of its name with this suffix
BUILD_SUFFIX = "__v"  # + a number: a collection a reindex builds beside a library's live one
RESERVED_NAME = re.compile(r"(__text|__live|__v[0-9]+)$")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
BACKENDS = ("auto", "torch", "openvino")
INDEXES = ("auto", "FLAT", "HNSW", "IVF_FLAT")
GPU_DECODES = ("auto", "on", "off")
# The cosine at or above which two pictures are near-identical copies: the duplicates finder's default, and what
# search's collapse folds (resized, recompressed and 3%-cropped copies score 0.98 and more;
# tests/search/test_duplicates.py)
DUPLICATE_THRESHOLD = 0.95


def default_model_dir() -> str:
    """cn_clip's own default download folder."""
    return os.path.expanduser("~/.cache/clip")


@dataclass(frozen=True)
class Settings:
    """Every setting of the engine; each field is SEARCHCORE_<NAME> and --<name>."""

    model: str = field(default="RN50", metadata={"help": "model name (RN50, ViT-B-16, ...) or checkpoint path"})
    vision_model: str | None = field(default=None, metadata={"help": "vision model of a fine-tuned checkpoint"})
    text_model: str | None = field(default=None, metadata={"help": "text model of a fine-tuned checkpoint"})
    resolution: int | None = field(default=None, metadata={"help": "input resolution of a fine-tuned checkpoint"})
    model_dir: str = field(default_factory=default_model_dir, metadata={"help": "model cache folder"})
    device: str = field(default="auto", metadata={"help": "auto|cpu|cuda", "choices": DEVICES})
    precision: str = field(default="auto", metadata={"help": "auto|fp32|bf16|fp16|int8 (int8: OpenVINO image tower)",
                                                     "choices": PRECISIONS})
    backend: str = field(default="auto", metadata={"help": "encoder backend auto|torch|openvino", "choices": BACKENDS})
    gpu_decode: str = field(default="auto", metadata={
        "help": "decode JPEGs on the encoder's device auto|on|off (auto: on CUDA with PyTorch)",
        "choices": GPU_DECODES})
    milvus_uri: str = field(default="./data/milvus.db",
                            metadata={"help": "Milvus Lite file or http://host:19530"})
    milvus_token: str = field(default="", metadata={"help": "Milvus server token (user:password)"})
    db_url: str = field(default="./data/images.db", metadata={"help": "SQLite path or mysql://user:pass@host:3306/db"})
    library: str = field(default="default", metadata={"help": "library name"})
    batch_size: int = field(default=8, metadata={"help": "images per encoder batch"})
    index: str = field(default="auto", metadata={"help": "vector index auto|FLAT|HNSW|IVF_FLAT", "choices": INDEXES})
    workers: int = field(default=0, metadata={"help": "decode threads (0: one per core)"})
    upload_url_hosts: str = field(default="", metadata={
        "help": "hosts whose image URLs POST /img/upload may fetch, comma-separated (*: any; empty: none)"})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.batch_size > 1024:
            raise ConfigError("setting_out_of_range", setting="batch size", low=1, high=1024, value=self.batch_size)
        if self.resolution is not None and not 16 <= self.resolution <= 1024:
            raise ConfigError("setting_out_of_range", setting="resolution", low=16, high=1024, value=self.resolution)
        if self.workers < 0:
            raise ConfigError("setting_at_least", setting="workers", low=0, value=self.workers)
        choices = (("device", DEVICES), ("precision", PRECISIONS), ("backend", BACKENDS), ("index", INDEXES),
                   ("gpu_decode", GPU_DECODES))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError("setting_choice", setting=name, allowed=", ".join(allowed), value=getattr(self, name))
        validate_library(self.library)

    @property
    def is_milvus_server(self) -> bool:
        """True when the vector store is a Milvus server rather than a Lite file."""
        return is_server_uri(self.milvus_uri)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from SEARCHCORE_* variables, then explicit overrides (None is ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment, with CLI flags taking precedence."""
        names = {f.name for f in fields(cls)}
        return cls.from_env(env, **{k: v for k, v in vars(args).items() if k in names})


def env_names() -> list[str]:
    """Every SEARCHCORE_* variable the engine reads."""
    return [ENV_PREFIX + f.name.upper() for f in fields(Settings)]


def add_arguments(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """Add one --flag per setting; defaults stay None so the environment can fill them."""
    group = parser.add_argument_group("settings (each also SEARCHCORE_<NAME>)")
    for f in fields(Settings):
        if f.name in skip:
            continue
        kind = int if "int" in str(f.type) else str
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=kind,
            default=None,
            choices=f.metadata.get("choices"),
            help=f.metadata.get("help"),
        )


def validate_library(name: str) -> str:
    """Return name if it is a valid library name, else raise a LibraryError."""
    from searchcore.errors import LibraryError

    if not isinstance(name, str) or not LIBRARY_NAME.fullmatch(name):
        raise LibraryError("library_name_invalid", name=name)
    reserved = RESERVED_NAME.search(name)  # the names of a library's text index, alias and reindex collections
    if reserved:
        raise LibraryError("library_name_reserved", name=name, suffix=reserved.group(1))
    return name


def is_server_uri(uri: str) -> bool:
    """True for http(s)/tcp/grpc URIs, which reach a Milvus server."""
    return re.match(r"^(https?|tcp|grpc)://", uri) is not None


def data_path(uri: str) -> Path:
    """The local path of an embedded store's file."""
    return Path(uri.removeprefix("sqlite:///").removeprefix("sqlite://"))


def _parse(name: str, raw: str, kind: Any) -> Any:
    if "int" in str(kind):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError("env_not_integer", variable=f"{ENV_PREFIX}{name.upper()}", value=raw) from None
    return raw
