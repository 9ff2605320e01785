"""OCR: read the words inside pictures with PP-OCRv4 (the models in rapidocr-onnxruntime's wheel) on OpenVINO.

This is the stock `rapidocr_onnxruntime.RapidOCR()` pipeline with three changes that make it many times faster
on a CPU and read the same text: detection runs at the picture's own size (the stock one first enlarges a
500x375 picture to 992x736, four times the pixels); the angle classifier, which only turns lines printed upside
down, is skipped (they are rare in photos and screenshots, and it costs a network pass per line); and the
networks run on OpenVINO, in bf16 where the CPU has it natively and a check against f32 passes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from searchcore.config import default_model_dir
from searchcore.errors import ConfigError
from searchcore.models.openvino.compiled import compile_cached, hints, native_bf16, ov, user_precision

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
# A line read with less confidence than this is dropped (the stock text_score): below it a "line" is mostly
# texture or a pattern read as characters, and indexing such guesses would make pictures match words they lack.
MIN_CONFIDENCE = 0.5
# A line of one character must be surer: at a picture's own scale the detector also boxes solid shapes, and
# the recognizer reads a square as 口 or a disc as O with up to 0.9, while real lone characters come back at 0.99.
MIN_CONFIDENCE_ONE_CHARACTER = 0.95
DET_MAX_SIDE = 960  # PaddleOCR's own default: larger pictures are shrunk for detection, smaller ones kept as they are
REC_HEIGHT = 48  # PP-OCRv4 recognition input: [n, 3, 48, width]
REC_MIN_WIDTH = 320
REC_BATCH = 6
_DET_FILE = "ch_PP-OCRv4_det_infer.onnx"
_REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"
_PROBE_LINES = ("OCR-probe-2026", "searchcore:42")
PROBE_MAX_DRIFT = 0.05  # largest change of a line's confidence bf16 may make against f32


@dataclass(frozen=True)
class OcrText:
    """What a picture says."""

    text: str  # the lines read, joined by "\n" in reading order (top-to-bottom, left-to-right); "" when none
    confidence: float  # mean recognition confidence of the kept lines, 0.0 when none


@dataclass(frozen=True)
class _Line:
    box: np.ndarray  # float32 [4,2]: top-left, top-right, bottom-right, bottom-left, in picture pixels
    text: str
    confidence: float


class OcrReader:
    """PP-OCRv4 detection and recognition compiled once for the CPU; safe to call from several threads.

    threads: CPU threads OCR may use. Each thread serves one OpenVINO stream, so `threads` pictures are read
    at once (by read_many, or by as many callers); one call of read() uses one thread.
    """

    def __init__(self, *, cache_dir: Path, threads: int = 1, precision: str = "auto") -> None:
        if threads < 1:
            raise ConfigError(f"OCR threads must be 1 or more, got {threads}")
        if precision not in PRECISIONS:
            raise ConfigError(f"OCR precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        cv2, db_postprocess, models = _rapidocr_parts()
        self._cv2 = cv2
        self._boxes_from_map = db_postprocess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6,
                                              score_mode="fast", use_dilation=True)  # the stock Det settings
        self.threads = threads
        self.cache_dir = Path(cache_dir)
        self._core = ov.Core()
        self._models = {name: self._core.read_model(models / file) for name, file in (("det", _DET_FILE),
                                                                                      ("rec", _REC_FILE))}
        characters = self._models["rec"].get_rt_info(["framework", "character"]).astype(str).splitlines()
        self._characters = np.array(["", *characters, " "], dtype=object)  # CTC blank first, space last
        self._local = threading.local()  # each thread's inference requests
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ocr")  # for read_many
        self._compiled = self._serve(precision)
        self.precision = user_precision(self._compiled["det"])
        logger.info("OCR ready: PP-OCRv4 on OpenVINO in %s, %d thread(s)", self.precision, threads)

    def read(self, image: Image.Image) -> OcrText:
        """The text in one picture ("" when it has none)."""
        lines = self._lines(_bgr(image), self._requests())
        if not lines:
            return OcrText("", 0.0)
        return OcrText("\n".join(line.text for line in lines), float(np.mean([line.confidence for line in lines])))

    def read_many(self, images: Sequence[Image.Image]) -> list[OcrText]:
        """The text in each picture, in order; `threads` pictures are read at once."""
        if self.threads == 1 or len(images) < 2:
            return [self.read(image) for image in images]
        return list(self._pool.map(self.read, images))

    # --------------------------------------------------------------- pipeline

    def _lines(self, image: np.ndarray, requests: dict[str, Any]) -> list[_Line]:
        """Detect text boxes, read each, keep the confident lines in reading order."""
        if image.size == 0:
            return []
        boxes = self._detect(image, requests["det"])
        if not boxes:
            return []
        crops = [self._crop(image, box) for box in boxes]
        read = self._recognize(crops, requests["rec"])
        lines = [_Line(box, text.strip(), confidence) for box, (text, confidence) in zip(boxes, read)]
        return _reading_order([line for line in lines if _confident(line)])

    def _detect(self, image: np.ndarray, request: Any) -> list[np.ndarray]:
        """Text boxes (float32 [4,2], clockwise from top-left) in picture pixels."""
        height, width = image.shape[:2]
        scale = min(1.0, DET_MAX_SIDE / max(height, width))
        size = [max(32, round(side * scale / 32) * 32) for side in (width, height)]  # the network wants x32
        pixels = self._cv2.resize(image, tuple(size)).astype(np.float32)
        pixels = (pixels * (2 / 255) - 1).transpose(2, 0, 1)[np.newaxis]  # (x/255 - 0.5) / 0.5, NCHW
        request.infer({0: np.ascontiguousarray(pixels)})
        probability = request.get_output_tensor(0).data
        found, _ = self._boxes_from_map(probability, (height, width))
        boxes = []
        for box in found:
            box = _clockwise(box.astype(np.float32))
            box[:, 0] = np.clip(box[:, 0], 0, width - 1)
            box[:, 1] = np.clip(box[:, 1], 0, height - 1)
            if min(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[0] - box[3])) >= 4:
                boxes.append(box)
        return boxes

    def _crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The box cut out and straightened; tall boxes (vertical text) turned to lie flat."""
        width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
        height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
        target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        matrix = self._cv2.getPerspectiveTransform(box, target)
        crop = self._cv2.warpPerspective(image, matrix, (width, height), borderMode=self._cv2.BORDER_REPLICATE,
                                         flags=self._cv2.INTER_CUBIC)
        return np.rot90(crop) if height >= 1.5 * width else crop

    def _recognize(self, crops: list[np.ndarray], request: Any) -> list[tuple[str, float]]:
        """(text, confidence) of each crop, read in batches of similar widths as the stock pipeline does."""
        order = np.argsort([crop.shape[1] / crop.shape[0] for crop in crops])
        read: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(crops), REC_BATCH):
            batch = [crops[i] for i in order[start : start + REC_BATCH]]
            ratio = max(REC_MIN_WIDTH / REC_HEIGHT, *(crop.shape[1] / crop.shape[0] for crop in batch))
            width = int(REC_HEIGHT * ratio)
            pixels = np.zeros((len(batch), 3, REC_HEIGHT, width), dtype=np.float32)  # padding is mid-grey, as stock
            for row, crop in enumerate(batch):
                fitted = min(width, math.ceil(REC_HEIGHT * crop.shape[1] / crop.shape[0]))
                resized = self._cv2.resize(crop, (fitted, REC_HEIGHT)).astype(np.float32)
                pixels[row, :, :, :fitted] = (resized * (2 / 255) - 1).transpose(2, 0, 1)
            request.infer({0: pixels})
            for i, decoded in zip(order[start : start + REC_BATCH], self._decode(request.get_output_tensor(0).data)):
                read[i] = decoded
        return read

    def _decode(self, probabilities: np.ndarray) -> list[tuple[str, float]]:
        """CTC greedy decoding: best class per column, repeats merged, blanks dropped; mean kept probability."""
        best = probabilities.argmax(axis=2)
        confidence = probabilities.max(axis=2)
        decoded = []
        for ids, probs in zip(best, confidence):
            keep = np.ones(len(ids), dtype=bool)
            keep[1:] = ids[1:] != ids[:-1]
            keep &= ids != 0
            decoded.append(("".join(self._characters[ids[keep]]), float(probs[keep].mean()) if keep.any() else 0.0))
        return decoded

    # ------------------------------------------------------------ openvino

    def _requests(self) -> dict[str, Any]:
        """This thread's inference requests (a request serves one call at a time; the compiled models are shared)."""
        requests: dict[str, Any] | None = getattr(self._local, "requests", None)
        if requests is None:
            requests = {name: compiled.create_infer_request() for name, compiled in self._compiled.items()}
            self._local.requests = requests
        return requests

    def _compile(self, name: str, precision: ov.Type) -> ov.CompiledModel:
        """One network compiled for CPU at the given precision, `threads` one-thread streams, with a blob cache
        per precision. Pinning is off so that OCR and the image encoder, each with streams of its own, do not pin
        to the same cores."""
        config: dict[Any, Any] = {hints.inference_precision: precision, "NUM_STREAMS": self.threads,
                                  "INFERENCE_NUM_THREADS": self.threads, "ENABLE_CPU_PINNING": False}
        return compile_cached(self._core, self._models[name], config, self.cache_dir, what="OCR")

    def _serve(self, precision: str) -> dict[str, ov.CompiledModel]:
        """Both networks at the asked precision; f32 when bf16 is not native or reads the probe differently."""
        native = native_bf16(self._core)
        if precision == "fp32" or (precision == "auto" and not native):
            return {name: self._compile(name, ov.Type.f32) for name in self._models}
        if not native:
            logger.warning("OCR in bf16 was asked for, but this CPU lacks native BF16; reading in f32")
            return {name: self._compile(name, ov.Type.f32) for name in self._models}
        reduced = {name: self._compile(name, ov.Type.bf16) for name in self._models}
        reference = {name: self._compile(name, ov.Type.f32) for name in self._models}
        verdict = _judge_probe(self, reduced, reference)
        if verdict is None:
            return reduced
        logger.warning("OCR in bf16 failed its check against f32 (%s); reading in f32, about half as fast", verdict)
        return reference


def load_ocr(cache_dir: Path | None = None, *, threads: int = 1, precision: str = "auto") -> OcrReader:
    """The process's OCR reader for these arguments, built on first use (compiling takes a few seconds once).

    cache_dir: where compiled networks are kept between runs (default: ~/.cache/clip/ocr, beside the models).
    Raises ConfigError when rapidocr-onnxruntime (which ships the models) is not installed.
    """
    folder = Path(cache_dir if cache_dir is not None else Path(default_model_dir()) / "ocr").expanduser()
    key = (str(folder.resolve()), threads, precision)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None:
            reader = _readers[key] = OcrReader(cache_dir=folder, threads=threads, precision=precision)
        return reader


_readers: dict[tuple[str, int, str], OcrReader] = {}
_readers_lock = threading.Lock()


def _rapidocr_parts() -> tuple[Any, Any, Path]:
    """cv2, rapidocr's DB post-processing class and the folder of its ONNX models."""
    try:
        import cv2
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess
    except ImportError as exc:
        raise ConfigError(f"OCR needs rapidocr-onnxruntime, which ships its models: pip install "
                          f"'rapidocr-onnxruntime>=1.4,<1.5' ({exc})") from None
    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    missing = [file for file in (_DET_FILE, _REC_FILE) if not (models / file).is_file()]
    if missing:
        raise ConfigError(f"rapidocr-onnxruntime at {models.parent} lacks {', '.join(missing)}; reinstall it")
    return cv2, DBPostProcess, models


def _bgr(image: Image.Image) -> np.ndarray:
    """uint8 [h,w,3] BGR pixels, the order PP-OCR was trained on; transparency is laid on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _clockwise(box: np.ndarray) -> np.ndarray:
    """The 4 corners ordered top-left, top-right, bottom-right, bottom-left."""
    by_x = box[np.argsort(box[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _reading_order(lines: list[_Line]) -> list[_Line]:
    """Top to bottom; left to right among lines whose tops differ by less than half a line's height."""
    ordered = sorted(lines, key=lambda line: (line.box[0, 1], line.box[0, 0]))
    for i in range(len(ordered) - 1):  # the stock pipeline's insertion pass, with a height-relative tolerance
        for j in range(i, -1, -1):
            upper, lower = ordered[j], ordered[j + 1]
            same_line = abs(lower.box[0, 1] - upper.box[0, 1]) < 0.5 * min(_height(upper), _height(lower))
            if not (same_line and lower.box[0, 0] < upper.box[0, 0]):
                break
            ordered[j], ordered[j + 1] = lower, upper
    return ordered


def _confident(line: _Line) -> bool:
    """Whether a line is read surely enough to keep (see MIN_CONFIDENCE)."""
    needed = MIN_CONFIDENCE_ONE_CHARACTER if len(line.text) == 1 else MIN_CONFIDENCE
    return bool(line.text) and line.confidence >= needed


def _height(line: _Line) -> float:
    return float(np.linalg.norm(line.box[0] - line.box[3]))


def _probe_picture() -> np.ndarray:
    """A fixed picture of two printed lines in Pillow's own font, so no CJK font is needed at run time.

    The lines have no spaces: the gap between two Latin words is the least certain class, and f32 itself
    keeps or drops it depending on the scale of the picture.
    """
    image = Image.new("RGB", (480, 200), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=30)
    for row, line in enumerate(_PROBE_LINES):
        draw.text((24, 40 + 70 * row), line, font=font, fill=(20, 20, 20))
    return _bgr(image)


def _read_probe(reader: OcrReader, compiled: dict[str, ov.CompiledModel]) -> list[tuple[str, float]]:
    """(text, confidence) of each line the given networks read on the probe picture."""
    requests = {name: model.create_infer_request() for name, model in compiled.items()}
    return [(line.text, line.confidence) for line in reader._lines(_probe_picture(), requests)]


def _judge_probe(reader: OcrReader, reduced: dict[str, ov.CompiledModel],
                 reference: dict[str, ov.CompiledModel]) -> str | None:
    """None when the reduced-precision networks read the probe as f32 does; else why not."""
    got, want = _read_probe(reader, reduced), _read_probe(reader, reference)
    if not want:
        return "f32 itself read nothing on the probe"
    if [text for text, _ in got] != [text for text, _ in want]:
        return f"read {[text for text, _ in got]}, f32 read {[text for text, _ in want]}"
    drift = max(abs(a - b) for (_, a), (_, b) in zip(got, want))
    if not math.isfinite(drift) or drift > PROBE_MAX_DRIFT:
        return f"line confidence differs from f32 by {drift:.3f}"
    return None
