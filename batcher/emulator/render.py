"""Real work for the emulated workflows, with Pillow: a pencil sketch, and a blog feature image.

The drawing functions are synchronous and pure (bytes in, PNG bytes out); :func:`render_job` runs
them in worker threads (``anyio.to_thread``) so the event loop keeps answering polls meanwhile.
A bad input never raises out of :func:`render_job`: it becomes the job's failure message, as the
provider reports a workflow that could not run.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import math
import re
from urllib.parse import unquote_to_bytes, urlsplit

import anyio
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageMath, ImageOps

from ..errors import BatcherError
from ..transport import fetch_bytes
from .catalog import split_blog_text
from .config import EmulatorConfig
from .jobs import Job, Output, RenderResult

#: Sketches keep the input's size up to this longest side (bigger inputs are scaled down).
MAX_SKETCH_SIDE = 1024
#: The blog feature image: the 1.91:1 size social cards use.
BLOG_SIZE = (1200, 630)
#: Inputs with more pixels than this are refused before decoding (decompression bombs).
MAX_INPUT_PIXELS = 40_000_000
#: Grey levels a pixel may differ from its neighbourhood and still count as flat paper: the
#: 1-4 level steps of an 8-bit gradient (a banded sky) would otherwise be drawn as lines.
FLAT_STEP = 2


class InputImageError(Exception):
    """The input image could not be fetched or read; the message is the job's failure."""


# --- loading the input ---------------------------------------------------------------------


def decode_data_uri(ref: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:`` URI (base64 or percent-encoded)."""
    header, sep, payload = ref.partition(",")
    if not sep:
        raise InputImageError("input_image data: URI has no ',' before its data")
    if header.lower().endswith(";base64"):
        if len(payload) > max_bytes * 4 // 3 + 8:
            raise InputImageError(f"input_image is over {max_bytes} bytes")
        try:
            compact = re.sub(r"\s+", "", unquote_to_bytes(payload).decode("ascii"))
            padded = compact + "=" * (-len(compact) % 4)
            data = base64.b64decode(padded, altchars=_altchars(compact), validate=True)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InputImageError(f"input_image data: URI is not valid base64 ({exc})") from exc
    else:
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise InputImageError(f"input_image is over {max_bytes} bytes")
    return data


def _altchars(text: str) -> bytes | None:
    # URL-safe base64 ("-" and "_") is common enough in hand-made data: URIs to accept.
    return b"-_" if ("-" in text or "_" in text) else None


async def load_input_image(ref: str, config: EmulatorConfig) -> bytes:
    """The input image's bytes, from a data: URI or an http(s) URL."""
    if ref.lower().startswith("data:"):
        return decode_data_uri(ref, config.max_input_bytes)
    where = urlsplit(ref)._replace(query="", fragment="").geturl()
    try:
        status, body = await fetch_bytes(ref, max_bytes=config.max_input_bytes, timeout=config.fetch_timeout)
    except BatcherError as exc:
        raise InputImageError(f"could not fetch input_image from {where}: {exc}") from exc
    if status != 200:
        raise InputImageError(f"could not fetch input_image from {where}: HTTP {status}")
    return body


def open_image(data: bytes) -> Image.Image:
    """Decode ``data`` as an image, upright, in RGB; refuses non-images and giant images."""
    image: Image.Image
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise InputImageError(f"input_image is {image.width}x{image.height}, too many pixels")
        image.load()
    except InputImageError:
        raise
    except Exception as exc:  # Pillow raises many types for undecodable data
        raise InputImageError(f"input_image is not a readable image ({type(exc).__name__}: {exc})") from exc
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "P"):
        # Transparent areas become paper white, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


# --- the sketch ----------------------------------------------------------------------------


def _colour_dodge(base: Image.Image, blend: Image.Image) -> Image.Image:
    """``base / (1 - blend)``: where base and blend agree (flat areas) it goes white; edges stay."""
    lambda_eval = getattr(ImageMath, "lambda_eval", None)
    if lambda_eval is None:  # Pillow < 10.3
        return colour_dodge_by_table(base, blend)
    result = lambda_eval(
        lambda a: a["convert"](a["min"](a["b"] * 255 / (256 - a["f"]), 255), "L"), b=base, f=blend
    )
    assert isinstance(result, Image.Image)
    return result


def colour_dodge_by_table(base: Image.Image, blend: Image.Image) -> Image.Image:
    """The same colour dodge through a 256x256 lookup table, for Pillow without ``lambda_eval``."""
    table = bytes(min(255, b * 255 // (256 - f)) for f in range(256) for b in range(256))
    pixels = bytes(table[(f << 8) | b] for f, b in zip(blend.tobytes(), base.tobytes(), strict=True))
    return Image.frombytes("L", base.size, pixels)


def flatten_small_steps(gray: Image.Image, smooth: Image.Image, step: int = FLAT_STEP) -> Image.Image:
    """``gray`` with its detail (``gray - smooth``) shrunk by ``step`` levels, and lifted by one.

    Soft thresholding, as wavelet denoisers do: differences of ``step`` levels or less (the banding
    of a smooth gradient) vanish, larger ones (edges) keep their shape, only ``step`` levels
    weaker. The lift of one level makes flat areas dodge to exactly white: ``smooth + 1`` over a
    divisor of ``smooth + 1``, instead of a brightness-dependent near-white that the gamma and
    autocontrast after the dodge would stretch into visible stripes.
    """
    brighter = ImageChops.subtract(gray, smooth, offset=-step)  # max(0, d - step)
    darker = ImageChops.subtract(smooth, gray, offset=-step)  # max(0, -d - step)
    return ImageChops.subtract(ImageChops.add(smooth, brighter, offset=1), darker)


def sketch_png(data: bytes) -> bytes:
    """A pencil sketch of the image in ``data``, as PNG (grayscale, the input's size up to 1024).

    The classic recipe: grayscale, invert, blur, colour-dodge the blur over the grayscale, then
    darken the strokes so they read as graphite rather than a faint halo. Before the dodge, tiny
    differences from the blur are flattened (:func:`flatten_small_steps`), so a gradient sky is
    paper, not stripes, while edges stay crisp.
    """
    image = open_image(data)
    image.thumbnail((MAX_SKETCH_SIDE, MAX_SKETCH_SIDE), Image.Resampling.LANCZOS)
    gray = ImageOps.grayscale(image)
    radius = max(2.0, min(image.size) / 60)
    blurred = ImageOps.invert(gray).filter(ImageFilter.GaussianBlur(radius))
    sketch = _colour_dodge(flatten_small_steps(gray, ImageOps.invert(blurred)), blurred)
    # Gamma > 1 deepens the mid-grey strokes; autocontrast spreads them to full range.
    sketch = sketch.point([round(255 * (v / 255) ** 2.2) for v in range(256)])
    return _png(ImageOps.autocontrast(sketch, cutoff=(1, 0)))


# --- the blog feature image ----------------------------------------------------------------

# Pleasant two-colour gradients (top-left, bottom-right); the title picks one.
_PALETTES = (
    ((32, 58, 130), (130, 62, 160)),
    ((14, 92, 104), (52, 160, 120)),
    ((178, 64, 70), (242, 148, 80)),
    ((40, 40, 70), (30, 120, 170)),
    ((90, 40, 110), (220, 90, 120)),
    ((20, 70, 60), (160, 170, 60)),
    ((50, 60, 90), (210, 130, 90)),
    ((16, 46, 80), (60, 170, 200)),
)


def _gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A diagonal gradient from ``top`` (top-left) to ``bottom`` (bottom-right)."""
    width, height = size
    side = int(math.hypot(width, height)) + 2
    ramp = Image.linear_gradient("L").resize((side, side)).rotate(45, resample=Image.Resampling.BILINEAR)
    left, upper = (side - width) // 2, (side - height) // 2
    mask = ramp.crop((left, upper, left + width, upper + height))
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def _shapes(size: tuple[int, int], digest: bytes) -> Image.Image:
    """Soft, translucent circles and a wave, placed by ``digest``: abstract, never the same twice."""
    scale = 4  # drawn small and blurred small, then enlarged: soft edges for a fraction of the cost
    small = (size[0] // scale, size[1] // scale)
    layer = Image.new("RGBA", small, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for i in range(6):
        x = digest[i] / 255 * small[0]
        y = digest[i + 6] / 255 * small[1]
        r = 12 + digest[i + 12] / 255 * small[1] * 0.45
        tint = 255 if i % 2 else 0
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(tint, tint, tint, 26 + digest[i + 18] % 30))
    phase = digest[24] / 255 * math.tau
    points = [
        (x, small[1] * 0.78 + math.sin(x / small[0] * math.tau * 1.5 + phase) * small[1] * 0.08)
        for x in range(0, small[0] + 1, 4)
    ]
    draw.line(points, fill=(255, 255, 255, 60), width=2)
    layer = layer.filter(ImageFilter.GaussianBlur(2))
    return layer.resize(size, Image.Resampling.BICUBIC)


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word longer than a line is cut."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width:
            cut = max(1, len(word) * width // max(1, int(font.getlength(word))))
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def blog_png(text: str) -> bytes:
    """A 1200x630 feature image for the post in ``text`` ("Title: ...\\n\\nDescription: ...")."""
    title, description = split_blog_text(text)
    title = title or "Untitled"
    digest = hashlib.sha256(text.encode()).digest()
    top, bottom = _PALETTES[digest[0] % len(_PALETTES)]
    width, height = BLOG_SIZE
    image = _gradient(BLOG_SIZE, top, bottom).convert("RGBA")
    image = Image.alpha_composite(image, _shapes(BLOG_SIZE, digest))
    draw = ImageDraw.Draw(image)
    margin = 80
    text_width = width - 2 * margin

    # The largest title size (down to 40 px) that fits in four lines.
    for size in (76, 68, 60, 52, 46, 40):
        title_font = _font(size)
        lines = _wrap(title, title_font, text_width)
        if len(lines) <= 4:
            break
    lines = lines[:4]
    line_height = int(size * 1.18)
    body_font = _font(28)
    body_lines = _wrap(description, body_font, text_width) if description else []
    # The description gets what room is left under the title, and is cut with an ellipsis.
    room = (height - 2 * margin - 40 - len(lines) * line_height) // 38
    if len(body_lines) > room:
        body_lines = body_lines[: max(0, room)]
        if body_lines:
            body_lines[-1] = body_lines[-1].rstrip(".,;: ") + "…"
    block = len(lines) * line_height + (24 + len(body_lines) * 38 if body_lines else 0)
    y = max(margin, (height - block) // 2)

    draw.rounded_rectangle((margin, y - 34, margin + 120, y - 26), radius=4, fill=(255, 255, 255, 220))
    for line in lines:
        draw.text((margin + 3, y + 3), line, font=title_font, fill=(0, 0, 0, 90))
        draw.text(
            (margin, y),
            line,
            font=title_font,
            fill=(255, 255, 255, 255),
            stroke_width=1,
            stroke_fill=(255, 255, 255, 255),
        )
        y += line_height
    y += 24
    for line in body_lines:
        draw.text((margin, y), line, font=body_font, fill=(240, 240, 245, 235))
        y += 38
    return _png(image.convert("RGB"))


# --- the placeholder -----------------------------------------------------------------------


@functools.cache
def placeholder_png() -> bytes:
    """One small fixed PNG (64x64), for benchmarks that run thousands of jobs."""
    image = Image.new("RGB", (64, 64), (200, 200, 210))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), outline=(90, 90, 110), width=3)
    return _png(image)


# --- a job ---------------------------------------------------------------------------------


async def render_job(job: Job, config: EmulatorConfig, limiter: anyio.CapacityLimiter) -> RenderResult:
    """Do ``job``'s work. Never raises (but for cancellation): failures are the result's ``error``."""
    name = f"{job.workflow.output_key}.png"
    try:
        if config.render == "placeholder":
            return RenderResult(outputs=(Output(name, "image/png", placeholder_png()),))
        if job.workflow.renderer == "sketch":
            data = await load_input_image(job.inputs["input_image"], config)
            png = await anyio.to_thread.run_sync(sketch_png, data, limiter=limiter)
        else:
            png = await anyio.to_thread.run_sync(
                blog_png, job.inputs["Blog_title_and_description"], limiter=limiter
            )
    except InputImageError as exc:
        return RenderResult(error=f"Failed to process input_image: {exc}")
    except Exception as exc:  # a bug in a renderer must fail one job, not the server
        return RenderResult(error=f"Internal error while running the workflow: {type(exc).__name__}")
    return RenderResult(outputs=(Output(name, "image/png", png),))
