"""Draw the demo pictures in this folder with Pillow: no photographs, no third-party content.

Run from anywhere: ``python jobs/demo-images/make_images.py``. Every picture is drawn at twice its
size and scaled down (cheap anti-aliasing), then stored as a palette PNG to stay small. The output
is the same on every run (fixed seeds), so re-running does not churn the repository.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
W, H = 640, 480
S = 2  # supersampling factor
RGB = tuple[int, int, int]


def canvas(top: RGB, bottom: RGB, horizon: float = 1.0) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A canvas whose sky fades from ``top`` to ``bottom`` down to ``horizon`` (share of height)."""
    image = Image.new("RGB", (W * S, H * S), bottom)
    draw = ImageDraw.Draw(image)
    end = int(H * S * horizon)
    for y in range(0, end, 4):
        t = y / max(1, end)
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.rectangle((0, y, W * S, y + 4), fill=colour)
    return image, draw


def p(*xy: float) -> list[float]:
    """Scale design coordinates (640x480) to the supersampled canvas."""
    return [v * S for v in xy]


def sun(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, colour: RGB = (255, 214, 90)) -> None:
    draw.ellipse(p(x - r, y - r, x + r, y + r), fill=colour)


def pine(draw: ImageDraw.ImageDraw, x: float, base: float, h: float, colour: RGB = (34, 92, 52)) -> None:
    draw.rectangle(p(x - h * 0.04, base - h * 0.15, x + h * 0.04, base), fill=(92, 64, 40))
    for i in range(3):
        top = base - h + i * h * 0.22
        half = h * (0.18 + i * 0.07)
        draw.polygon(p(x, top, x - half, top + h * 0.45, x + half, top + h * 0.45), fill=colour)


def round_tree(draw: ImageDraw.ImageDraw, x: float, base: float, h: float) -> None:
    draw.rectangle(p(x - 7, base - h * 0.45, x + 7, base), fill=(102, 70, 44))
    r = h * 0.32
    draw.ellipse(p(x - r, base - h - 0.1 * r, x + r, base - h + 1.9 * r), fill=(58, 130, 62))


def mountains() -> Image.Image:
    image, draw = canvas((120, 170, 225), (230, 200, 170), 0.65)
    sun(draw, 470, 120, 45)
    draw.polygon(p(0, 330, 140, 150, 260, 330), fill=(100, 110, 140))
    draw.polygon(p(160, 330, 330, 100, 520, 330), fill=(80, 90, 120))
    draw.polygon(p(330, 100, 371, 150, 352, 142, 335, 158, 314, 140, 293, 150), fill=(245, 248, 252))
    draw.polygon(p(400, 330, 540, 170, 640, 290, 640, 330), fill=(110, 118, 150))
    draw.rectangle(p(0, 330, 640, 480), fill=(70, 130, 170))
    for y in range(340, 480, 18):
        draw.line(p(40 + (y * 7) % 200, y, 120 + (y * 7) % 200, y), fill=(140, 190, 220), width=3 * S)
    for x, h in ((30, 120), (70, 90), (590, 130), (560, 95)):
        pine(draw, x, 345, h)
    return image


def lighthouse() -> Image.Image:
    image, draw = canvas((40, 60, 110), (240, 160, 120), 0.7)
    draw.rectangle(p(0, 336, 640, 480), fill=(40, 80, 120))
    draw.polygon(p(250, 480, 290, 360, 380, 330, 460, 370, 520, 480), fill=(90, 80, 76))
    draw.polygon(p(350, 340, 372, 150, 408, 150, 430, 340), fill=(245, 245, 240))
    for y in (180, 240, 300):
        draw.polygon(
            p(
                369 - (y - 150) * 0.12,
                y,
                411 + (y - 150) * 0.12,
                y,
                413 + (y + 28 - 150) * 0.12,
                y + 28,
                367 - (y + 28 - 150) * 0.12,
                y + 28,
            ),
            fill=(200, 40, 40),
        )
    draw.rectangle(p(372, 120, 408, 150), fill=(255, 236, 150))
    draw.polygon(p(366, 120, 390, 96, 414, 120), fill=(60, 60, 70))
    draw.rectangle(p(362, 148, 418, 156), fill=(60, 60, 70))
    draw.polygon(p(372, 128, 60, 80, 60, 170), fill=(255, 240, 170))
    for x in range(0, 640, 40):
        draw.arc(p(x, 400, x + 40, 420), 200, 340, fill=(150, 190, 220), width=2 * S)
    return image


def house() -> Image.Image:
    image, draw = canvas((150, 200, 240), (205, 230, 250), 0.7)
    sun(draw, 90, 80, 40)
    draw.rectangle(p(0, 360, 640, 480), fill=(96, 170, 80))
    draw.rectangle(p(210, 220, 450, 380), fill=(230, 200, 150))
    draw.polygon(p(190, 225, 330, 120, 470, 225), fill=(170, 60, 50))
    draw.rectangle(p(400, 140, 425, 195), fill=(130, 70, 60))
    draw.rectangle(p(305, 290, 355, 380), fill=(110, 70, 40))
    draw.ellipse(p(342, 332, 348, 338), fill=(240, 210, 90))
    for x0 in (235, 385):
        draw.rectangle(p(x0, 250, x0 + 45, 295), fill=(160, 210, 240), outline=(255, 255, 255), width=4 * S)
        draw.line(p(x0 + 22, 250, x0 + 22, 295), fill=(255, 255, 255), width=3 * S)
    draw.polygon(p(305, 380, 355, 380, 390, 480, 270, 480), fill=(200, 190, 170))
    for x in range(0, 200, 22):
        draw.rectangle(p(x, 340, x + 10, 390), fill=(250, 250, 250))
    draw.rectangle(p(0, 355, 200, 362), fill=(250, 250, 250))
    round_tree(draw, 540, 380, 200)
    return image


def city() -> Image.Image:
    image, draw = canvas((20, 24, 60), (230, 120, 90), 0.85)
    sun(draw, 520, 90, 30, (250, 250, 230))
    rng = random.Random(4)
    x = 0
    while x < 640:
        w = rng.randint(45, 90)
        h = rng.randint(120, 330)
        draw.rectangle(p(x, 420 - h, x + w - 4, 420), fill=(30, 34, 52))
        for wy in range(420 - h + 14, 410, 22):
            for wx in range(x + 8, x + w - 14, 16):
                if rng.random() < 0.45:
                    draw.rectangle(p(wx, wy, wx + 7, wy + 10), fill=(255, 220, 120))
        if rng.random() < 0.3:
            draw.line(p(x + w / 2, 420 - h, x + w / 2, 420 - h - 40), fill=(30, 34, 52), width=3 * S)
        x += w
    draw.rectangle(p(0, 420, 640, 480), fill=(20, 30, 50))
    for y in range(428, 480, 10):
        draw.line(p(rng.randint(0, 600), y, rng.randint(0, 640), y), fill=(200, 150, 90), width=2 * S)
    return image


def sailboat() -> Image.Image:
    image, draw = canvas((110, 180, 235), (215, 235, 250), 0.6)
    sun(draw, 110, 100, 38, (255, 230, 120))
    draw.rectangle(p(0, 290, 640, 480), fill=(30, 110, 170))
    for y in range(300, 480, 22):
        for x in range((y * 13) % 60, 640, 90):
            draw.arc(p(x, y, x + 40, y + 14), 200, 340, fill=(170, 210, 240), width=2 * S)
    draw.polygon(p(230, 330, 470, 330, 440, 370, 260, 370), fill=(140, 60, 40))
    draw.line(p(350, 330, 350, 110), fill=(70, 50, 40), width=5 * S)
    draw.polygon(p(356, 115, 356, 320, 460, 320), fill=(250, 250, 245))
    draw.polygon(p(344, 140, 344, 320, 260, 320), fill=(240, 230, 210))
    draw.polygon(p(350, 110, 380, 118, 350, 126), fill=(220, 50, 50))
    for x, y in ((480, 120), (520, 150), (450, 90)):
        draw.arc(p(x - 14, y, x, y + 12), 200, 340, fill=(60, 60, 60), width=2 * S)
        draw.arc(p(x, y, x + 14, y + 12), 200, 340, fill=(60, 60, 60), width=2 * S)
    return image


def flowers() -> Image.Image:
    image, draw = canvas((180, 220, 245), (235, 245, 250), 0.6)
    draw.rectangle(p(0, 330, 640, 480), fill=(110, 170, 80))
    specs = (
        (110, 230, (230, 70, 90)),
        (250, 180, (250, 200, 60)),
        (390, 210, (160, 90, 200)),
        (520, 170, (250, 130, 60)),
        (180, 300, (240, 240, 250)),
        (460, 300, (230, 90, 160)),
    )
    for x, y, colour in specs:
        draw.line(p(x, y, x + 8, 470), fill=(50, 120, 50), width=6 * S)
        draw.ellipse(p(x + 4, y + 90, x + 48, y + 112), fill=(70, 150, 60))
        for k in range(8):
            a = k * math.tau / 8
            cx, cy = x + math.cos(a) * 30, y + math.sin(a) * 30
            draw.ellipse(p(cx - 20, cy - 20, cx + 20, cy + 20), fill=colour)
        draw.ellipse(
            p(x - 16, y - 16, x + 16, y + 16), fill=(250, 210, 60) if colour[1] < 200 else (140, 90, 40)
        )
    return image


def cat() -> Image.Image:
    image, draw = canvas((240, 225, 200), (220, 200, 175))
    fur, dark = (235, 150, 70), (150, 80, 40)
    draw.polygon(p(170, 200, 190, 60, 280, 140), fill=fur)
    draw.polygon(p(470, 200, 450, 60, 360, 140), fill=fur)
    draw.polygon(p(195, 170, 205, 95, 255, 140), fill=(245, 180, 180))
    draw.polygon(p(445, 170, 435, 95, 385, 140), fill=(245, 180, 180))
    draw.ellipse(p(150, 110, 490, 430), fill=fur)
    for x in (250, 320, 390):
        draw.line(p(x, 130, x, 175), fill=dark, width=8 * S)
    draw.ellipse(p(215, 220, 295, 290), fill=(120, 200, 90))
    draw.ellipse(p(345, 220, 425, 290), fill=(120, 200, 90))
    draw.ellipse(p(247, 224, 263, 286), fill=(20, 20, 20))
    draw.ellipse(p(377, 224, 393, 286), fill=(20, 20, 20))
    draw.ellipse(p(250, 236, 258, 246), fill=(255, 255, 255))
    draw.ellipse(p(380, 236, 388, 246), fill=(255, 255, 255))
    draw.ellipse(p(250, 300, 390, 410), fill=(250, 235, 215))
    draw.polygon(p(305, 310, 335, 310, 320, 330), fill=(230, 110, 120))
    draw.arc(p(290, 320, 322, 360), 20, 160, fill=dark, width=3 * S)
    draw.arc(p(318, 320, 350, 360), 20, 160, fill=dark, width=3 * S)
    for dy in (-14, 0, 14):
        draw.line(p(280, 340 + dy / 2, 130, 320 + dy * 2), fill=(60, 50, 40), width=2 * S)
        draw.line(p(360, 340 + dy / 2, 510, 320 + dy * 2), fill=(60, 50, 40), width=2 * S)
    return image


def still_life() -> Image.Image:
    image, draw = canvas((200, 180, 150), (160, 140, 115), 0.62)
    draw.rectangle(p(0, 300, 640, 480), fill=(120, 80, 50))
    draw.line(p(0, 300, 640, 300), fill=(90, 60, 35), width=4 * S)
    draw.polygon(p(430, 300, 440, 150, 470, 120, 500, 150, 510, 300), fill=(70, 100, 160))
    draw.rectangle(p(460, 90, 480, 125), fill=(70, 100, 160))
    draw.ellipse(p(140, 270, 420, 340), fill=(230, 225, 215))
    draw.chord(p(140, 200, 420, 380), 0, 180, fill=(230, 225, 215))
    draw.ellipse(p(160, 190, 250, 280), fill=(200, 40, 40))
    draw.ellipse(p(300, 180, 400, 280), fill=(120, 180, 60))
    draw.ellipse(p(230, 160, 320, 250), fill=(240, 170, 40))
    draw.line(p(205, 195, 212, 170), fill=(90, 60, 30), width=4 * S)
    draw.line(p(350, 185, 345, 160), fill=(90, 60, 30), width=4 * S)
    draw.ellipse(p(175, 205, 195, 225), fill=(240, 120, 120))
    draw.ellipse(p(90, 330, 150, 390), fill=(200, 40, 40))
    draw.polygon(p(500, 330, 560, 300, 600, 360, 540, 400), fill=(250, 250, 240))
    return image


def forest() -> Image.Image:
    image, draw = canvas((170, 210, 230), (220, 235, 225), 0.55)
    draw.rectangle(p(0, 300, 640, 480), fill=(80, 140, 70))
    draw.polygon(p(290, 480, 350, 480, 330, 300, 318, 300), fill=(190, 160, 110))
    rng = random.Random(9)
    for row, (base, size) in enumerate(((300, 120), (350, 170), (420, 230))):
        for _ in range(7 - row):
            x = rng.choice((rng.uniform(10, 270), rng.uniform(380, 630)))
            shade = (30 + row * 6, 90 - row * 12, 50 - row * 6)
            pine(draw, x, base + rng.uniform(-10, 10), size * rng.uniform(0.8, 1.1), shade)
    return image


def balloon() -> Image.Image:
    image, draw = canvas((90, 160, 230), (200, 230, 250))
    for x, y, r in ((90, 110, 40), (140, 100, 50), (500, 380, 50), (560, 370, 40)):
        draw.ellipse(p(x - r, y - r / 2, x + r, y + r / 2), fill=(250, 250, 255))
    # The envelope: a circle over a tapering skirt; stripes are painted through its shape.
    envelope = Image.new("L", image.size, 0)
    shape = ImageDraw.Draw(envelope)
    shape.ellipse(p(220, 50, 420, 250), fill=255)
    shape.polygon(p(226, 185, 296, 310, 344, 310, 414, 185), fill=255)
    stripes = Image.new("RGB", image.size)
    paint = ImageDraw.Draw(stripes)
    colours = ((230, 60, 60), (250, 200, 50), (60, 140, 220), (250, 250, 250))
    for i in range(8):
        paint.rectangle(p(220 + i * 25, 40, 245 + i * 25, 320), fill=colours[i % 4])
    image.paste(stripes, (0, 0), envelope)
    draw.line(p(298, 310, 305, 372), fill=(80, 60, 40), width=2 * S)
    draw.line(p(342, 310, 335, 372), fill=(80, 60, 40), width=2 * S)
    draw.rectangle(p(300, 368, 340, 405), fill=(150, 100, 50))
    draw.rectangle(p(0, 450, 640, 480), fill=(100, 160, 80))
    return image


def windmill() -> Image.Image:
    image, draw = canvas((130, 190, 235), (230, 240, 250), 0.65)
    draw.rectangle(p(0, 330, 640, 480), fill=(110, 175, 80))
    for row in range(5):
        y = 360 + row * 24
        colour = ((230, 60, 70), (250, 210, 60), (240, 120, 160), (250, 250, 250), (200, 60, 120))[row]
        for x in range(10 + row * 7, 640, 30):
            draw.ellipse(p(x, y, x + 12, y + 14), fill=colour)
    draw.polygon(p(260, 360, 290, 180, 350, 180, 380, 360), fill=(150, 110, 80))
    draw.polygon(p(280, 185, 320, 130, 360, 185), fill=(100, 60, 50))
    draw.rectangle(p(305, 310, 335, 360), fill=(80, 50, 30))
    draw.rectangle(p(308, 230, 332, 258), fill=(200, 220, 240))
    cx, cy = 320, 170
    for k in range(4):
        a = math.radians(25 + 90 * k)
        ex, ey = cx + math.cos(a) * 150, cy + math.sin(a) * 150
        nx, ny = -math.sin(a) * 18, math.cos(a) * 18
        draw.polygon(
            p(
                cx + nx * 0.2,
                cy + ny * 0.2,
                ex + nx * 0.2,
                ey + ny * 0.2,
                ex + nx,
                ey + ny,
                cx + nx * 0.6 + math.cos(a) * 30,
                cy + ny * 0.6 + math.sin(a) * 30,
            ),
            fill=(245, 240, 230),
            outline=(90, 70, 60),
        )
        draw.line(p(cx, cy, ex, ey), fill=(90, 70, 60), width=3 * S)
    draw.ellipse(p(cx - 8, cy - 8, cx + 8, cy + 8), fill=(60, 40, 30))
    return image


def bicycle() -> Image.Image:
    image, draw = canvas((245, 240, 230), (225, 220, 205))
    draw.rectangle(p(0, 390, 640, 480), fill=(180, 170, 150))
    frame = (30, 120, 160)
    for cx in (180, 460):
        draw.ellipse(p(cx - 95, 270, cx + 95, 460), outline=(40, 40, 40), width=9 * S)
        for k in range(12):
            a = k * math.tau / 12
            draw.line(
                p(cx, 365, cx + math.cos(a) * 88, 365 + math.sin(a) * 88), fill=(120, 120, 120), width=S
            )
        draw.ellipse(p(cx - 8, 357, cx + 8, 373), fill=(60, 60, 60))
    joints = ((180, 365), (300, 370), (270, 230), (430, 230))
    for a, b in ((0, 1), (1, 2), (0, 2), (2, 3), (1, 3)):
        draw.line(p(*joints[a], *joints[b]), fill=frame, width=8 * S)
    draw.line(p(430, 230, 460, 365), fill=frame, width=8 * S)
    draw.line(p(430, 230, 420, 190), fill=(60, 60, 60), width=6 * S)
    draw.line(p(400, 190, 450, 185), fill=(60, 60, 60), width=7 * S)
    draw.line(p(270, 230, 262, 205), fill=(60, 60, 60), width=6 * S)
    draw.ellipse(p(235, 192, 295, 212), fill=(50, 40, 30))
    draw.ellipse(p(285, 352, 315, 388), outline=(60, 60, 60), width=4 * S)
    return image


SCENES: dict[str, Callable[[], Image.Image]] = {
    "mountains": mountains,
    "lighthouse": lighthouse,
    "house": house,
    "city-skyline": city,
    "sailboat": sailboat,
    "flowers": flowers,
    "cat": cat,
    "still-life": still_life,
    "forest": forest,
    "hot-air-balloon": balloon,
    "windmill": windmill,
    "bicycle": bicycle,
}


def main() -> None:
    for name, draw_scene in SCENES.items():
        image = draw_scene().resize((W, H), Image.Resampling.LANCZOS)
        # 96 colours without dithering: flat areas compress to a few KB; gradients keep gentle bands.
        small = image.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        path = HERE / f"{name}.png"
        small.save(path, optimize=True)
        print(f"{path.name}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
