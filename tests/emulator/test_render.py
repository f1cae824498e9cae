"""The renders are real: a sketch that is a sketch of its input, a feature image with the title."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat

from batcher.emulator.catalog import split_blog_text
from batcher.emulator.render import (
    InputImageError,
    blog_png,
    decode_data_uri,
    open_image,
    placeholder_png,
    sketch_png,
)

from .helpers import DEMO_IMAGES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC)
    return Image.open(io.BytesIO(data))


def test_a_sketch_keeps_the_size_is_grey_and_mostly_paper() -> None:
    source = (DEMO_IMAGES / "lighthouse.png").read_bytes()
    sketch = _image(sketch_png(source))
    assert sketch.size == (640, 480) and sketch.mode == "L"
    # Mostly white paper with dark strokes: bright on average, with real blacks.
    stats = ImageStat.Stat(sketch)
    assert stats.mean[0] > 170
    darkest = sketch.getextrema()[0]
    assert isinstance(darkest, int) and darkest < 60


def test_a_sketch_differs_from_the_input_but_follows_its_edges() -> None:
    source = (DEMO_IMAGES / "house.png").read_bytes()
    gray = ImageOps.grayscale(Image.open(io.BytesIO(source)))
    sketch = _image(sketch_png(source)).convert("L")
    assert ImageStat.Stat(ImageChops.difference(gray, sketch)).mean[0] > 20
    # Near the input's edges the sketch has strokes; away from them, paper.
    edges = gray.filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 40 else 0)
    near_edges = edges.filter(ImageFilter.MaxFilter(5))
    stroke = ImageStat.Stat(sketch, mask=near_edges).mean[0]
    paper = ImageStat.Stat(sketch, mask=ImageOps.invert(near_edges)).mean[0]
    assert stroke < paper - 20


def test_a_banded_gradient_sky_sketches_to_clean_paper() -> None:
    """The lighthouse's sky steps 1-4 grey levels every few rows; those steps once drew lines."""
    sketch = _image(sketch_png((DEMO_IMAGES / "lighthouse.png").read_bytes()))
    sky = sketch.crop((460, 0, 640, 320))  # right of the lighthouse, above the horizon
    assert sky.getextrema() == (255, 255)
    horizon = sketch.crop((0, 330, 300, 345))
    darkest = horizon.getextrema()[0]
    assert isinstance(darkest, int) and darkest < 60


def test_small_steps_vanish_but_edges_stay_crisp() -> None:
    # A gradient of 3-level steps every 8 rows, with a mid-grey square on it.
    image = Image.new("L", (200, 200))
    image.putdata([60 + 3 * (y // 8) for y in range(200) for _ in range(200)])
    image.paste(20, (80, 80, 120, 120))
    out = io.BytesIO()
    image.save(out, format="PNG")
    sketch = _image(sketch_png(out.getvalue()))
    assert sketch.crop((0, 0, 200, 50)).getextrema() == (255, 255)  # far from the square: paper
    edge = sketch.crop((70, 70, 130, 130)).getextrema()[0]
    assert isinstance(edge, int) and edge < 60  # the square's outline: a dark stroke


def test_the_fallback_colour_dodge_matches_the_fast_one() -> None:
    from batcher.emulator.render import _colour_dodge, colour_dodge_by_table

    base = Image.linear_gradient("L").resize((64, 64))
    blend = base.rotate(90)
    assert _colour_dodge(base, blend).tobytes() == colour_dodge_by_table(base, blend).tobytes()


def test_big_inputs_are_scaled_down_and_transparency_becomes_paper() -> None:
    big = Image.new("RGBA", (2048, 1024), (0, 0, 0, 0))
    big.paste((20, 40, 200, 255), (500, 300, 1500, 700))
    out = io.BytesIO()
    big.save(out, format="PNG")
    sketch = _image(sketch_png(out.getvalue()))
    assert sketch.size == (1024, 512)
    corner = sketch.getpixel((5, 5))
    assert isinstance(corner, int) and corner > 240  # the transparent corner is white paper


def test_a_blog_image_is_a_1200x630_feature_image_with_the_title_in_it() -> None:
    text = "Title: What to watch for on election night, and beyond\n\nDescription: The first clues\n"
    image = _image(blog_png(text))
    assert image.size == (1200, 630) and image.mode == "RGB"
    # The title is set in white over a coloured background: many near-white pixels, many colours.
    white = sum(1 for v in image.convert("L").point(lambda v: 255 if v > 235 else 0).tobytes() if v)
    assert 2000 < white < 200_000
    assert len(image.getcolors(maxcolors=1_000_000) or []) > 500


def test_different_posts_get_different_images_and_the_same_post_the_same() -> None:
    a = blog_png("Title: Sourdough at altitude\n\nDescription: Why the loaf fell\n")
    b = blog_png("Title: The quiet economics of bike lanes\n\nDescription: Who pays\n")
    assert a != b
    assert a == blog_png("Title: Sourdough at altitude\n\nDescription: Why the loaf fell\n")


def test_a_very_long_title_still_fits() -> None:
    image = _image(blog_png("Title: " + "Extraordinarily " * 40 + "\n\nDescription: " + "words " * 300))
    assert image.size == (1200, 630)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Title: A\n\nDescription: B\n", ("A", "B")),
        ("Title: A\n", ("A", "")),
        ("  Title:  A title \n\n Description:  Two\nlines \n", ("A title", "Two\nlines")),
        ("Just some text\nand more", ("Just some text", "and more")),
    ],
)
def test_split_blog_text(text: str, expected: tuple[str, str]) -> None:
    assert split_blog_text(text) == expected


def test_data_uris_decode_in_every_common_spelling() -> None:
    raw = bytes(range(256))
    plain = base64.b64encode(raw).decode()
    assert decode_data_uri(f"data:image/png;base64,{plain}", 10_000) == raw
    assert decode_data_uri(f"data:image/png;base64,{plain.rstrip('=')}", 10_000) == raw
    assert decode_data_uri(f"data:;base64,{base64.urlsafe_b64encode(raw).decode()}", 10_000) == raw
    assert decode_data_uri("data:text/plain,a%20b", 100) == b"a b"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64," + "A" * 400, "over 100 bytes"),
    ],
)
def test_bad_data_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(InputImageError, match=message):
        decode_data_uri(uri, 100)


def test_bytes_that_are_not_an_image_are_refused_clearly() -> None:
    with pytest.raises(InputImageError, match="not a readable image"):
        open_image(b"GIF89a but not really")


def test_the_placeholder_is_a_small_fixed_png() -> None:
    data = placeholder_png()
    assert _image(data).size == (64, 64) and len(data) < 2000 and data == placeholder_png()
