"""OpenVINO for every network searchcore runs (the encoder's towers, int8, OCR): imported once, after the
telemetry opt-out; the precision names; the native-bf16 check; a compiled-blob cache per precision; and the
check of a cached IR entry against its manifest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from searchcore.models import cache_entries

logger = logging.getLogger(__name__)


def _disable_openvino_telemetry() -> str:
    """Opt out of OpenVINO telemetry without touching the network; returns how it was done."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # openvino's model converter then uses its built-in no-op stub
        return "not-installed"
    # Same consent file `opt_in_out --opt_out` writes ($HOME/intel/openvino_telemetry = "0"), but written
    # directly: the CLI would also try to *send* an opt-out event. The telemetry library re-reads this file
    # whenever it (re)initialises: on `import openvino` and when `convert_model` switches its app name.
    checker = OptInChecker()
    how = "consent-file"
    try:
        declined = checker.check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED
        if not declined and not checker.update_result(ConsentCheckResult.DECLINED):
            raise OSError(f"cannot write {checker.consent_file()}")
    except Exception:  # noqa: BLE001 - read-only/odd home: make every consent check in-process say "declined"
        logger.debug("could not write the OpenVINO telemetry consent file", exc_info=True)
        OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED  # type: ignore[method-assign]
        how = "in-process"
    try:  # openvino imported before this module: its live singleton may already have consented
        from openvino_telemetry.main import Telemetry

        live = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)
        if live is not None:
            live.consent = False
    except Exception:  # noqa: BLE001
        logger.debug("could not reach the live OpenVINO telemetry instance", exc_info=True)
    logger.debug("OpenVINO telemetry disabled (%s)", how)
    return how


TELEMETRY_OPT_OUT = _disable_openvino_telemetry()  # must run before `import openvino` sends its import event

import openvino as ov  # noqa: E402
import openvino.properties as props  # noqa: E402
import openvino.properties.hint as hints  # noqa: E402

BLOB_CACHE = "ov-compiled-blobs"  # under a cache folder: one sub-folder of compiled blobs per precision
USER_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # OpenVINO's type names in SEARCHCORE_PRECISION's


def native_bf16(core: ov.Core) -> bool:
    """True when the CPU computes in bf16 natively (AVX512_BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return "BF16" in core.get_property("CPU", props.device.capabilities)


def precision_of(compiled: ov.CompiledModel) -> str:
    """The inference precision a compiled network really runs at, in OpenVINO's words: 'f32', 'bf16', ..."""
    return str(compiled.get_property(hints.inference_precision).get_type_name())


def user_precision(compiled: ov.CompiledModel) -> str:
    """The precision a compiled network really runs at, in SEARCHCORE_PRECISION's words: 'fp32', 'bf16', ..."""
    name = precision_of(compiled)
    return USER_PRECISION.get(name, name)


def compile_cached(core: ov.Core, model: ov.Model, config: dict[Any, Any], cache_dir: Path, label: str = "",
                   what: str = "OpenVINO") -> ov.CompiledModel:
    """Compile for CPU with config, keeping the compiled blob under cache_dir in a folder of its precision
    (and label).

    OpenVINO's CPU plugin leaves the inference precision out of its blob-cache key, and both precisions compile
    the same IR, so one shared blob folder hands a bf16 compile the f32 blob (and the reverse). On AMX that
    mixed blob gives NaN or random features. Each precision therefore gets a blob folder of its own; an
    unwritable cache only compiles every time.
    """
    precision = config[hints.inference_precision]
    blob_dir = cache_dir / BLOB_CACHE / "-".join(filter(None, (precision.get_type_name(), label)))
    try:
        blob_dir.mkdir(parents=True, exist_ok=True)
        config = {**config, props.cache_dir: str(blob_dir)}
    except OSError as exc:
        logger.warning("%s compiled-blob cache disabled: %s", what, exc)
    return core.compile_model(model, "CPU", config)


def verified_files(entry: Path, meta: dict[str, Any], names: set[str], error: type[Exception], *,
                   known: bool = False) -> dict[str, list[int]]:
    """Check a cached IR entry against its manifest.json: the same meta, exactly these files, each of its
    recorded size and sha256; raise error saying what differs. With known, a file whose stat stamp the
    manifest's "verified" record holds is trusted without hashing it again; returns the stamps of the files
    hashed now (for that record)."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("meta") != json.loads(json.dumps(meta)):
        raise error("manifest metadata mismatch")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != names:
        raise error("manifest file list mismatch")
    stamps = manifest.get("verified") if known else None
    stamps = stamps if isinstance(stamps, dict) else {}
    fresh: dict[str, list[int]] = {}
    for name, info in files.items():
        path = entry / name
        try:
            stamp = cache_entries.stamp(path)
            if stamp == stamps.get(name) and stamp[0] == info["size"]:
                continue  # unchanged since its sha256 was last checked
            if stamp[0] != info["size"] or cache_entries.sha256(path) != info["sha256"]:
                raise error(f"{name} does not match its manifest")
            fresh[name] = stamp
        except (OSError, KeyError, TypeError) as exc:
            raise error(f"{name}: {exc}") from exc
    return fresh
