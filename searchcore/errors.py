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


class MassRemovalError(DatasetError):
    """A --sync run would remove all of a folder's pictures, or more than a share of them, at once: what an
    unmounted drive looks like. Nothing was removed."""

    def __init__(self, root: str, gone: int, recorded: int, found: int, share: float) -> None:
        self.root, self.gone, self.recorded, self.found, self.share = root, gone, recorded, found, share
        if found == 0:
            why = "the folder is empty: is the drive mounted?"
        elif gone == recorded:
            why = "none of its recorded files is there any more: is this the right folder?"
        else:
            why = f"that is more than {share:.0%} of them at once."
        super().__init__(f"refusing to remove {gone} of the {recorded} pictures recorded in {root}: {why} "
                         "Nothing was removed. If they really are gone, run again with --sync --allow-mass-removal")


class OriginalUnavailableError(QueryError):
    """A folder picture's file is gone (changed=False) or no longer the picture indexed (changed=True)."""

    def __init__(self, image_id: int, path: str, changed: bool) -> None:
        self.image_id, self.path, self.changed = image_id, path, changed
        if changed:
            message = (f"the file of image {image_id} ({path}) has changed since it was indexed; ingest its folder "
                       "again to index the new picture")
        else:
            message = (f"the file of image {image_id} ({path}) is not in its folder any more; if the folder moved "
                       "to another disk, run searchcore relocate --library LIBRARY NEW_FOLDER")
        super().__init__(message)
