"""Images as stock Caffe's converters and Data layer see them, through OpenCV itself
(opencv-python-headless, pinned in requirements.txt): the calls of Caffe's util/io.cpp.

    decode(path)                 cv::imread(IMREAD_COLOR)            ReadImageToCVMat (io.cpp:73-89)
    read(path, h, w, color)      cv::imread(COLOR/GRAYSCALE), resize ReadImageToCVMat, as ImageData calls it
    decode(bytes, native=True)   cv::imdecode(IMREAD_UNCHANGED)      DecodeDatumToCVMatNative (io.cpp:166-176)
    decode_forced(bytes, gray)   cv::imdecode(IMREAD_COLOR/GRAYSCALE) DecodeDatumToCVMat (io.cpp:177-189)
    resize(image, h, w)          cv::resize(Size(w, h)), INTER_LINEAR ReadImageToCVMat (io.cpp:84)
    encode(image, "jpg")         cv::imencode(".jpg")                 ReadImageToDatum (io.cpp:128-129)

Arrays are height x width x channels uint8 in OpenCV's BGR channel order. OpenCV's own
threads are turned off (cv2.setNumThreads(0)): the engine and the converters parallelize by
worker processes, one image each. (The byte-identity tests against convert_imageset prove
that this OpenCV decodes and resizes as Debian's does.)
"""
from pathlib import Path

import numpy as np

from sepnets.errors import UserError

ENCODINGS = ("bmp", "jpeg", "jpg", "png")


class ImageError(Exception):
    """An image that cannot be read or decoded (reported and skipped by converters)."""


def _cv2():
    import cv2
    cv2.setNumThreads(0)
    return cv2


def _checked(image, what):
    if image is None:
        raise ImageError(f"cannot decode image ({what})")
    if image.dtype != np.uint8:  # CVMatToDatum's CHECK (io.cpp:213)
        raise ImageError(f"{image.dtype} pixels: Caffe takes 8-bit images only")
    return image if image.ndim == 3 else image[:, :, None]


def _buffer(data):
    return np.frombuffer(bytes(data) if isinstance(data, bytearray) else data, np.uint8)


def decode(source, native=False):
    """A file path or encoded bytes -> BGR uint8 array.

    native=False is cv::imread(IMREAD_COLOR), what convert_imageset uses: EXIF orientation
    applied, always 3 channels. native=True is cv::imdecode(IMREAD_UNCHANGED), what Caffe uses
    for encoded Datums: no EXIF rotation, grayscale kept as 1 channel, alpha kept (BGRA).
    """
    cv2 = _cv2()
    if isinstance(source, (bytes, bytearray, memoryview)):
        flag = cv2.IMREAD_UNCHANGED if native else cv2.IMREAD_COLOR
        return _checked(cv2.imdecode(_buffer(source), flag), "encoded bytes")
    return _read_file(source, cv2.IMREAD_UNCHANGED if native else cv2.IMREAD_COLOR)


def _read_file(source, flag):
    path = Path(source)
    if path.is_dir():
        raise ImageError("is a directory")
    if not path.is_file():
        raise ImageError("no such file")
    return _checked(_cv2().imread(str(path), flag), path.name)


def read(path, height=0, width=0, color=True):
    """ReadImageToCVMat(path, height, width, is_color) (io.cpp:73-89), as the ImageData layer
    reads its list's images: cv::imread in colour (IMREAD_COLOR: BGR) or grayscale
    (IMREAD_GRAYSCALE: 1 channel), resized to width x height (cv::resize's default,
    INTER_LINEAR) when both are positive."""
    cv2 = _cv2()
    image = _read_file(path, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    return resize(image, height, width) if height > 0 and width > 0 else image


def decode_forced(source, gray):
    """Encoded bytes -> BGR (gray=False, 3 channels) or gray (1 channel) uint8 array, as
    cv::imdecode with IMREAD_COLOR / IMREAD_GRAYSCALE (Caffe's force_color / force_gray)."""
    cv2 = _cv2()
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    return _checked(cv2.imdecode(_buffer(source), flag), "encoded bytes")


def resize(image, height, width):
    """cv::resize(image, Size(width, height)) with INTER_LINEAR (its default), as
    ReadImageToCVMat resizes for convert_imageset's --resize_height/--resize_width."""
    cv2 = _cv2()
    if image.shape[:2] == (height, width):
        return image.copy()
    try:
        out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    except cv2.error as err:  # a size OpenCV cannot allocate or represent
        raise ImageError(f"OpenCV cannot resize it to {width}x{height}: "
                         f"{str(err).strip().splitlines()[-1]}") from None
    return out if out.ndim == 3 else out[:, :, None]


def encode(image, encoding):
    """BGR (or 1-channel) uint8 array -> encoded bytes, cv::imencode('.' + encoding) with its
    default parameters (JPEG quality 95), as ReadImageToDatum re-encodes."""
    if encoding.lower() not in ENCODINGS:
        raise UserError(f"cannot encode images as '{encoding}' (one of {', '.join(ENCODINGS)})")
    ok, buffer = _cv2().imencode("." + encoding.lower(), image)
    if not ok:
        raise ImageError(f"OpenCV cannot encode this image as {encoding}")
    return buffer.tobytes()


def hwc_to_chw(image):
    """H x W x C -> C x H x W, the layout of Datum.data (Caffe's CVMatToDatum)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))
