"""The exceptions a user can see, each with a message they can act on."""

from __future__ import annotations


class SearchcoreError(Exception):
    """Base class: the CLI prints these and exits 1; the UI shows them."""


class ConfigError(SearchcoreError):
    """A setting has a value the engine cannot use."""


class ModelError(SearchcoreError):
    """The model could not be found or loaded."""


class LibraryError(SearchcoreError):
    """A library name is invalid, missing, or belongs to another model."""


class LibraryLockedError(LibraryError):
    """An embedded Milvus Lite file is held by another process."""


class DatasetError(SearchcoreError):
    """A dataset folder, split or file cannot be read."""


class QueryError(SearchcoreError):
    """A search query or its parameters are invalid."""


class BackendUnavailableError(SearchcoreError):
    """Milvus or the image database cannot be reached right now."""


class UnsupportedError(SearchcoreError):
    """The backend in use cannot do what was asked (a Milvus server too old for full-text search)."""
