"""Images as stock Caffe's converters see them: OpenCV's imread/imdecode and cv::resize
(INTER_LINEAR) reproduced with Pillow and numpy, pixel for pixel (checked against
convert_imageset in the tests).

Arrays are height x width x channels uint8 in OpenCV's BGR channel order.
"""
import io

import numpy as np

from sepnets.errors import UserError

# cv::resize's fixed-point linear interpolation: coefficients in 11 bits
_COEF_BITS = 11
_COEF_ONE = 1 << _COEF_BITS


class ImageError(Exception):
    """An image that cannot be read or decoded (reported and skipped by converters)."""


def _open(source):
    from PIL import Image, UnidentifiedImageError
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        image.load()
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"cannot decode image: {err}") from None
    return image


def _cmyk_to_bgr(image):
    """OpenCV's CMYK conversion (icvCvt_CMYK2BGR_8u_C4C3R) on libjpeg's raw CMYK values; Pillow
    has already inverted the values of Adobe-marked JPEGs, so they are inverted back first."""
    cmyk = np.asarray(image, np.int32)
    if "adobe" in image.info:
        cmyk = 255 - cmyk
    k = cmyk[..., 3:4]
    bgr = k - (((255 - cmyk[..., 2::-1]) * k) >> 8)
    return bgr.astype(np.uint8)


def decode(source, native=False):
    """A file path or encoded bytes -> BGR uint8 array.

    native=False is cv::imread(IMREAD_COLOR), what convert_imageset uses: EXIF orientation
    applied, always 3 channels. native=True is cv::imdecode(IMREAD_UNCHANGED), what Caffe uses
    for encoded Datums: no EXIF rotation, grayscale kept as 1 channel, alpha kept (BGRA).
    """
    from PIL import ImageOps
    image = _open(source)
    if native:
        if image.mode in ("L", "1"):
            return np.asarray(image.convert("L"))[:, :, None].copy()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = np.asarray(image.convert("RGBA"))
            return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
    else:
        ImageOps.exif_transpose(image, in_place=True)
    if image.mode == "CMYK":
        return _cmyk_to_bgr(image)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))[:, :, ::-1]


def decode_forced(source, gray):
    """Encoded bytes -> BGR (gray=False, 3 channels) or gray (1 channel) uint8 array, as
    cv::imdecode with IMREAD_COLOR / IMREAD_GRAYSCALE (Caffe's force_color / force_gray)."""
    image = _open(source)
    if gray:
        return np.asarray(image.convert("L"))[:, :, None].copy()
    if image.mode == "CMYK":
        return _cmyk_to_bgr(image)
    return np.asarray(image.convert("RGB"))[:, :, ::-1]


def _axis(dst, src):
    """Source index and float32 fraction per destination index, as cv::resize computes them."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    return s, (f - s.astype(np.float32)).astype(np.float32)


def _fixed(coef):
    # saturate_cast<short>(coef * INTER_RESIZE_COEF_SCALE): round half to even
    return np.rint(coef.astype(np.float32) * np.float32(_COEF_ONE)).astype(np.int32)


def resize(image, height, width):
    """cv::resize(image, Size(width, height)) with INTER_LINEAR on a uint8 H x W x C array.

    OpenCV works in fixed point: horizontal coefficients and vertical coefficients are 11-bit
    integers; the vertical pass drops 4 bits, keeps the high 16 bits of each product, adds 2
    and drops 2 more. Edge pixels are replicated. (int32 is enough: 255 * 2048 * 2048 / 16.)
    """
    src_h, src_w, channels = image.shape
    if (src_h, src_w) == (height, width):
        return image.copy()
    sx, fx = _axis(width, src_w)
    sy, fy = _axis(height, src_h)
    outside = (sx < 0) | (sx >= src_w - 1)
    fx[outside] = 0
    sx = np.clip(sx, 0, src_w - 1)
    # rows flattened to (x, channel) columns: column of output x, channel c = x * channels + c
    lanes = np.arange(channels)
    left = (sx[:, None] * channels + lanes).ravel()
    right = (np.minimum(sx + 1, src_w - 1)[:, None] * channels + lanes).ravel()
    ax0 = np.repeat(_fixed(np.float32(1) - fx), channels)
    ax1 = np.repeat(_fixed(fx), channels)
    # only the source rows the vertical pass reads get a horizontal pass
    needed, where = np.unique(np.clip(np.concatenate([sy, sy + 1]), 0, src_h - 1),
                              return_inverse=True)
    src = image.reshape(src_h, src_w * channels)[needed].astype(np.int32)
    rows = src[:, left]
    rows *= ax0
    rows += src[:, right] * ax1
    rows >>= 4
    top, bottom = rows[where[:height]], rows[where[height:]]
    top *= _fixed(np.float32(1) - fy)[:, None]
    top >>= 16
    bottom *= _fixed(fy)[:, None]
    bottom >>= 16
    top += bottom
    top += 2
    top >>= 2
    np.clip(top, 0, 255, out=top)
    return top.astype(np.uint8).reshape(height, width, channels)


ENCODINGS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}


def encode(image, encoding):
    """BGR (or 1-channel) uint8 array -> encoded bytes, like cv::imencode('.' + encoding):
    JPEG at OpenCV's default quality 95."""
    from PIL import Image
    fmt = ENCODINGS.get(encoding.lower())
    if fmt is None:
        raise UserError(f"cannot encode images as '{encoding}' (one of {', '.join(sorted(ENCODINGS))})")
    if image.shape[2] == 1:
        pil = Image.fromarray(image[:, :, 0], "L")
    else:
        pil = Image.fromarray(np.ascontiguousarray(image[:, :, 2::-1]), "RGB")
    out = io.BytesIO()
    pil.save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def hwc_to_chw(image):
    """H x W x C -> C x H x W, the layout of Datum.data (Caffe's CVMatToDatum)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))
