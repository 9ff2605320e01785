"""Settings come from SEARCHCORE_* variables and CLI flags, and bad values are refused clearly."""

from __future__ import annotations

import argparse

import pytest

from searchcore.config import Settings, add_arguments, env_names, validate_library
from searchcore.errors import ConfigError, LibraryError


def test_environment_fills_settings() -> None:
    env = {"SEARCHCORE_MODEL": "ViT-B-16", "SEARCHCORE_BATCH_SIZE": "32", "SEARCHCORE_LIBRARY": "photos",
           "SEARCHCORE_MILVUS_URI": "http://milvus:19530", "SEARCHCORE_DB_URL": "mysql://u:p@db:3306/img"}
    s = Settings.from_env(env)
    assert (s.model, s.batch_size, s.library) == ("ViT-B-16", 32, "photos")
    assert s.is_milvus_server and s.db_url.startswith("mysql://")


def test_defaults_match_the_documented_contract() -> None:
    s = Settings.from_env({})
    assert (s.model, s.library, s.milvus_uri, s.device, s.precision) == (
        "RN50", "default", "./data/milvus.db", "auto", "auto")
    assert not s.is_milvus_server


def test_flags_override_environment() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "RN50", "--batch-size", "4", "--model-dir", "/m"])
    s = Settings.from_args(args, env={"SEARCHCORE_MODEL": "ViT-H-14", "SEARCHCORE_BATCH_SIZE": "64"})
    assert (s.model, s.batch_size, s.model_dir) == ("RN50", 4, "/m")


def test_every_contract_variable_is_read() -> None:
    names = set(env_names())
    for required in ("SEARCHCORE_MODEL", "SEARCHCORE_VISION_MODEL", "SEARCHCORE_TEXT_MODEL", "SEARCHCORE_RESOLUTION",
                     "SEARCHCORE_MODEL_DIR", "SEARCHCORE_DEVICE", "SEARCHCORE_PRECISION", "SEARCHCORE_MILVUS_URI",
                     "SEARCHCORE_MILVUS_TOKEN", "SEARCHCORE_DB_URL", "SEARCHCORE_LIBRARY", "SEARCHCORE_BATCH_SIZE",
                     "SEARCHCORE_BACKEND"):
        assert required in names


@pytest.mark.parametrize("env", [{"SEARCHCORE_BATCH_SIZE": "many"}, {"SEARCHCORE_BATCH_SIZE": "0"},
                                 {"SEARCHCORE_DEVICE": "tpu"}, {"SEARCHCORE_PRECISION": "int4"},
                                 {"SEARCHCORE_GPU_DECODE": "yes"}])
def test_bad_values_are_refused_with_a_message(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


@pytest.mark.parametrize("name", ["default", "a", "Photos_2024", "x" * 64])
def test_valid_library_names(name: str) -> None:
    assert validate_library(name) == name


@pytest.mark.parametrize("name", ["a; DROP TABLE", "../x", "名字", "x" * 65, "", "1abc", "_a", "a-b"])
def test_invalid_library_names(name: str) -> None:
    with pytest.raises(LibraryError, match="invalid library name"):
        validate_library(name)
