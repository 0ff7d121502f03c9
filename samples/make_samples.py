"""Generate the sample clip and style image shipped in samples/ (deterministic, seeded).

    python samples/make_samples.py            # writes samples/clip.mp4 and samples/style.png
    python samples/make_samples.py --out DIR

clip.mp4: 2 s, 12 fps, 256×144 H.264 + AAC. A landscape at sunset seen from a camera panning
right (three parallax layers), with a bouncing ball, a drifting kite and a car driving past,
over a C-major chord. It is drawn with numpy, so it has the things a stylizer meets in real
footage: camera motion, independent object motion, occlusion, smooth sky, textured ground.

style.png: 256×256 "painting": swirling brush strokes in bold colours following a vortex flow
field, each stroke made of a few bristle lines, on a dark ground.

Only numpy, Pillow and PyAV are needed; vidstyle itself is not imported.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 20240611
WIDTH, HEIGHT = 256, 144
FPS = Fraction(12)
FRAMES = 24
AUDIO_RATE = 48_000
CHORD_HZ = (261.63, 329.63, 392.00)  # C4, E4, G4
# Per-frame pan (px) of the far, middle and near layers: nearer moves faster (parallax).
PAN_PX = (1.0, 2.5, 5.0)


# ----------------------------------------------------------------------------- the clip


def _smooth_noise(rng: np.random.Generator, width: int, height: int, scale: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled with bicubic interpolation."""
    coarse = rng.random((height // scale + 3, width // scale + 3)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize(
        ((width // scale + 3) * scale, (height // scale + 3) * scale), Image.Resampling.BICUBIC
    )
    return np.clip(np.asarray(image)[:height, :width], 0.0, 1.0)


def _ridge(rng: np.random.Generator, width: int, base: float, amplitude: float) -> np.ndarray:
    """Height (in rows) of a hill silhouette for every column: a few random sines."""
    x = np.arange(width, dtype=np.float64)
    y = np.full(width, base)
    for _ in range(4):
        period = rng.uniform(60, 260)
        y += (
            amplitude * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * x / period + rng.uniform(0, 6.3))
        )
    return y


def _layer(width: int, ridge: np.ndarray, colour: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """RGBA float layer: `colour` (modulated by `texture`) below `ridge`, anti-aliased edge."""
    rows = np.arange(HEIGHT, dtype=np.float64)[:, None]
    alpha = np.clip(rows - ridge[None, :] + 0.5, 0.0, 1.0)
    rgb = colour[None, None, :] * (0.75 + 0.5 * texture[..., None])
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def _over(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    alpha = layer[..., 3:4]
    return base * (1 - alpha) + layer[..., :3] * alpha


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    """Anti-aliased coverage of a disc, HEIGHT×WIDTH."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    return np.clip(r - np.hypot(x - cx, y - cy) + 0.5, 0.0, 1.0)


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    cover_x = np.clip(np.minimum(x + 1 - x0, x1 - x), 0, 1)
    cover_y = np.clip(np.minimum(y + 1 - y0, y1 - y), 0, 1)
    return cover_x * cover_y


def _triangle(points: list[tuple[float, float]]) -> np.ndarray:
    """Coverage of a triangle, 4× supersampled with Pillow."""
    s = 4
    canvas = Image.new("L", (WIDTH * s, HEIGHT * s), 0)
    ImageDraw.Draw(canvas).polygon([(x * s, y * s) for x, y in points], fill=255)
    small = canvas.resize((WIDTH, HEIGHT), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _paint(
    image: np.ndarray, coverage: np.ndarray, colour: tuple[float, float, float]
) -> np.ndarray:
    return image * (1 - coverage[..., None]) + np.asarray(colour) * coverage[..., None]


def make_clip_frames(seed: int = SEED) -> list[np.ndarray]:
    """The sample clip's frames as H×W×3 uint8 RGB arrays."""
    rng = np.random.default_rng(seed)
    travel = int(np.ceil(max(PAN_PX) * FRAMES)) + 2
    wide = WIDTH + travel

    # Sky: a vertical sunset gradient with a soft sun; it does not move (infinitely far).
    t = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    top, horizon = np.array([40, 60, 150.0]), np.array([250, 150, 90.0])
    sky = np.broadcast_to(top * (1 - t) + horizon * t, (HEIGHT, WIDTH, 3)).copy()
    sun = _disc(WIDTH * 0.72, HEIGHT * 0.42, 14)
    glow = _disc(WIDTH * 0.72, HEIGHT * 0.42, 30) * 0.25
    sky = _paint(_paint(sky, glow, (255, 200, 120)), sun, (255, 235, 170))

    layers = []
    specs = [  # (ridge base row, amplitude, colour, noise scale)
        (70.0, 14.0, np.array([110, 80, 140.0]), 24),  # far purple hills
        (92.0, 10.0, np.array([60, 130, 80.0]), 10),  # middle green hills
        (118.0, 5.0, np.array([150, 110, 60.0]), 4),  # near ground: dirt and grass
    ]
    for base, amplitude, colour, scale in specs:
        ridge = _ridge(rng, wide, base, amplitude)
        texture = _smooth_noise(rng, wide, HEIGHT, scale)
        layers.append(_layer(wide, ridge, colour, texture))

    grain = rng.normal(0.0, 2.0, size=(FRAMES, HEIGHT, WIDTH, 1))  # film grain, per frame
    frames = []
    for i in range(FRAMES):
        image = sky.copy()
        for layer, speed in zip(layers, PAN_PX, strict=True):
            # Camera pans right, so the scene slides left; sub-pixel offsets are interpolated.
            offset = speed * i
            left = int(np.floor(offset))
            frac = offset - left
            view = (1 - frac) * layer[:, left : left + WIDTH] + frac * layer[
                :, left + 1 : left + 1 + WIDTH
            ]
            image = _over(image, view)

        # A red ball bouncing along the middle ground.
        bx = 30 + 7.5 * i
        by = 100 - 45 * abs(np.sin(np.pi * i / 8))
        image = _paint(image, _disc(bx, by, 8), (220, 40, 50))
        image = _paint(image, _disc(bx - 2.5, by - 2.5, 2.5), (255, 170, 170))  # highlight

        # A yellow kite drifting up and to the left in the sky.
        kx, ky = 200 - 2.0 * i, 30 - 0.6 * i + 3 * np.sin(i / 2.0)
        kite = [(kx, ky - 9), (kx + 6, ky), (kx, ky + 11), (kx - 6, ky)]
        image = _paint(image, _triangle(kite[:3]), (250, 210, 40))
        image = _paint(image, _triangle([kite[0], kite[2], kite[3]]), (240, 120, 30))

        # A blue car driving left to right along the foreground, faster than the pan.
        cx = -46 + 12.0 * i
        image = _paint(image, _box(cx, 118, cx + 46, 130), (40, 90, 200))
        image = _paint(image, _box(cx + 10, 109, cx + 34, 119), (70, 130, 230))
        image = _paint(image, _box(cx + 13, 111, cx + 31, 117), (180, 220, 250))  # windows
        for wheel in (cx + 10, cx + 36):
            image = _paint(image, _disc(wheel, 131, 5), (25, 25, 30))

        image = image + grain[i]
        frames.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, seed: int = SEED) -> Path:
    frames = make_clip_frames(seed)
    seconds = FRAMES / FPS
    # bitexact: no library version strings, so regenerating gives the same bytes.
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height = WIDTH, HEIGHT
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / FPS
        # One thread: x264's output depends on the thread count.
        video.codec_context.thread_count = 1
        video.options = {"crf": "20", "preset": "slow"}
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.codec_context.layout = "stereo"
        audio.codec_context.bit_rate = 96_000

        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / FPS
            out.mux(video.encode(frame))

        samples = int(seconds * AUDIO_RATE)
        t = np.arange(samples) / AUDIO_RATE
        chord = sum(np.sin(2 * np.pi * f * t) for f in CHORD_HZ) / len(CHORD_HZ)
        envelope = np.minimum(1.0, t / 0.05) * np.minimum(1.0, (seconds - t) / 0.3)  # no clicks
        left = 0.3 * chord * envelope
        right = 0.3 * np.sin(2 * np.pi * CHORD_HZ[0] / 2 * t) * envelope * 0.5 + 0.7 * left
        pcm = np.stack([left, right]).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.ascontiguousarray(pcm[:, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = start
            frame.time_base = Fraction(1, AUDIO_RATE)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        out.mux(video.encode(None))
    return path


# ------------------------------------------------------------------------- the style image

PALETTE = np.array(
    [
        [16, 42, 112],  # ultramarine
        [34, 96, 180],  # cobalt
        [92, 170, 220],  # sky
        [250, 204, 40],  # cadmium yellow
        [240, 130, 20],  # orange
        [200, 40, 40],  # vermilion
        [245, 240, 220],  # titanium white
        [30, 120, 90],  # viridian
    ],
    dtype=np.float64,
)


def make_style_image(size: int = 256, seed: int = SEED) -> Image.Image:
    """Swirling bold brush strokes (a flow field of random vortices), as an RGB image."""
    rng = np.random.default_rng(seed)
    scale = 2  # draw at 2× and downsample: smoother strokes
    canvas_size = size * scale
    image = Image.new("RGB", (canvas_size, canvas_size), (20, 24, 48))
    draw = ImageDraw.Draw(image)

    vortices = [
        (
            rng.uniform(0, size),
            rng.uniform(0, size),
            rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5),
        )
        for _ in range(5)
    ]

    def flow(x: float, y: float) -> tuple[float, float]:
        # Sum of point vortices (with a soft core) plus a gentle diagonal drift.
        vx, vy = 0.35, 0.15
        for cx, cy, strength in vortices:
            dx, dy = x - cx, y - cy
            r2 = dx * dx + dy * dy + 400.0
            vx += -strength * dy * 60 / r2
            vy += strength * dx * 60 / r2
        norm = np.hypot(vx, vy) + 1e-9
        return vx / norm, vy / norm

    # Big strokes first, then smaller ones on top, as a painter works.
    for width, count, length in ((9.0, 260, 34), (6.0, 420, 24), (3.5, 600, 14)):
        for _ in range(count):
            x, y = rng.uniform(-10, size + 10, 2)
            base = PALETTE[rng.integers(len(PALETTE))]
            points = [(x, y)]
            for _ in range(int(length)):
                dx, dy = flow(x, y)
                x, y = x + dx * 1.5, y + dy * 1.5
                points.append((x, y))
            points_arr = np.array(points)
            # Normal to the stroke direction, for the bristle offsets.
            direction = points_arr[-1] - points_arr[0]
            normal = np.array([-direction[1], direction[0]]) / (np.hypot(*direction) + 1e-9)
            for bristle in np.linspace(-0.5, 0.5, 4):
                colour = np.clip(base + rng.normal(0, 18, 3), 0, 255).astype(int)
                offset = normal * bristle * width
                line = [
                    ((px + offset[0]) * scale, (py + offset[1]) * scale) for px, py in points_arr
                ]
                draw.line(
                    line,
                    fill=tuple(int(c) for c in colour),
                    width=int(width * scale / 3) + 1,
                    joint="curve",
                )

    image = image.filter(ImageFilter.SMOOTH_MORE).resize((size, size), Image.Resampling.LANCZOS)
    # Canvas grain: a faint high-frequency texture over everything.
    grain = rng.normal(0, 6, size=(size, size, 1))
    array = np.clip(np.asarray(image, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def write_style(path: Path, seed: int = SEED) -> Path:
    make_style_image(seed=seed).save(path, format="PNG", optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (write_clip(args.out / "clip.mp4"), write_style(args.out / "style.png")):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
