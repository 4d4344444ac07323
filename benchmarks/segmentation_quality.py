"""How good is ``vision.segmentation.subject_mask``? Synthetic composites with known truth.

Two people (NASA's astronaut portrait from scikit-image, Grace Hopper from matplotlib) are
cut out along hand-drawn silhouettes (head ellipse + torso polygon, pixels as in the source)
and pasted, with a 1 px soft edge, onto coffee, chelsea, rocket and two textured-noise
backgrounds at several scales and positions, bottom-aligned like a portrait crop. The known
paste mask is the ground truth. For each composite both paths run: with the true face box
(perfect detection; detection quality is measured elsewhere) and with no faces.

Prints mean/median/10th-percentile IoU, boundary F-score (tolerance 1% of the image
diagonal), how confidence tracks IoU, and the time per call for a 4 MP image.

    python benchmarks/segmentation_quality.py            # synthetic composites
    python benchmarks/segmentation_quality.py --real-photos /tmp/photoremix-seg

``--real-photos`` also runs on the portrait contents of the evaluation cases (folder in
``PHOTOREMIX_PHOTOS_DIR``, no ground truth) and writes mask overlays to the folder given,
for looking at. Never commit those overlays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image

from photoremix.vision.faces import Face, detect_faces
from photoremix.vision.segmentation import subject_mask


@dataclass(frozen=True)
class Person:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 {0, 1}, the silhouette
    face_box: tuple[int, int, int, int]  # dlib HOG box on ``image``


def _silhouette(
    shape: tuple[int, ...],
    head: tuple[tuple[int, int], tuple[int, int]],
    torso: list[tuple[int, int]],
) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(mask, head[0], head[1], 0, 0, 360, 1, thickness=-1)
    cv2.fillPoly(mask, [np.array(torso, np.int32)], 1)
    return mask


def people() -> list[Person]:
    astronaut = skimage.data.astronaut()
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    # Silhouettes drawn by eye on the source images; face boxes from detect_faces.
    astronaut_torso = [(150, 170), (110, 200), (60, 265), (30, 330), (22, 512), (300, 512)]
    astronaut_torso += [(290, 400), (360, 345), (352, 285), (300, 215), (285, 170)]
    hopper_torso = [(200, 325), (130, 345), (60, 390), (20, 440), (12, 600), (512, 600)]
    hopper_torso += [(512, 432), (480, 400), (420, 368), (330, 325)]
    return [
        Person(
            "astronaut",
            astronaut,
            _silhouette(astronaut.shape, ((226, 100), (74, 86)), astronaut_torso),
            (176, 77, 266, 167),
        ),
        Person(
            "hopper",
            hopper,
            _silhouette(hopper.shape, ((262, 180), (106, 150)), hopper_torso),
            (177, 137, 359, 318),
        ),
    ]


def textured_noise(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Colour noise summed over several blur scales: blotches, gradients and fine grain."""
    rng = np.random.default_rng(seed)
    height, width = shape
    image = np.zeros((height, width, 3), np.float32)
    for sigma, weight in ((40, 0.6), (8, 0.25), (1.5, 0.15)):
        layer = rng.normal(0, 1, (height, width, 3)).astype(np.float32)
        layer = cv2.GaussianBlur(layer, (0, 0), sigma)
        image += weight * layer / (layer.std() + 1e-6)
    image = 128 + 45 * image
    return np.clip(image, 0, 255).astype(np.uint8)


def backgrounds(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    images = {
        "coffee": skimage.data.coffee(),
        "chelsea": skimage.data.chelsea(),
        "rocket": skimage.data.rocket(),
    }
    height, width = shape
    resized = {name: _cover(image, width, height) for name, image in images.items()}
    resized["noise-a"] = textured_noise(shape, seed=1)
    resized["noise-b"] = textured_noise(shape, seed=2)
    return resized


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover (width, height) and centre-crop."""
    factor = max(width / image.shape[1], height / image.shape[0])
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    big = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y0 : y0 + height, x0 : x0 + width]


def composite(
    person: Person, background: np.ndarray, scale: float, x_centre: float
) -> tuple[np.ndarray, np.ndarray, Face]:
    """Paste ``person`` (height = scale * frame height) bottom-aligned at ``x_centre``.

    Returns (image, ground-truth uint8 {0, 1} mask, face in image coordinates).
    """
    height, width = background.shape[:2]
    ys, xs = np.nonzero(person.mask)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    factor = scale * height / (bottom - top)
    crop_w = round((right - left) * factor)
    crop_h = round((bottom - top) * factor)
    pixels = cv2.resize(person.image[top:bottom, left:right], (crop_w, crop_h), cv2.INTER_AREA)
    alpha = cv2.resize(
        person.mask[top:bottom, left:right].astype(np.float32), (crop_w, crop_h), cv2.INTER_AREA
    )
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.8)  # a camera's edge, not a scissor cut

    x0 = round(x_centre * width - crop_w / 2)
    y0 = height - crop_h
    canvas_alpha = np.zeros((height, width), np.float32)
    canvas_pixels = np.zeros_like(background)
    # Clip the paste to the frame (the person may stick out at the sides).
    sx0, sx1 = max(0, -x0), min(crop_w, width - x0)
    canvas_alpha[y0:height, x0 + sx0 : x0 + sx1] = alpha[:, sx0:sx1]
    canvas_pixels[y0:height, x0 + sx0 : x0 + sx1] = pixels[:, sx0:sx1]

    a = canvas_alpha[..., None]
    image = (a * canvas_pixels + (1 - a) * background).round().astype(np.uint8)
    truth = (canvas_alpha > 0.5).astype(np.uint8)
    face_left, face_top, face_right, face_bottom = person.face_box
    box = (
        round((face_left - left) * factor) + x0,
        round((face_top - top) * factor) + y0,
        round((face_right - left) * factor) + x0,
        round((face_bottom - top) * factor) + y0,
    )
    face = Face(box=box, landmarks=np.zeros((5, 2), np.float32))
    return image, truth, face


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


def boundary_f_score(predicted: np.ndarray, truth: np.ndarray, tolerance: float) -> float:
    """F-score of boundary pixels matched within ``tolerance`` pixels (DAVIS-style)."""

    def boundary(mask: np.ndarray) -> np.ndarray:
        edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
        edge[[0, -1], :] = 0  # the frame edge is not an object boundary
        edge[:, [0, -1]] = 0
        return edge > 0

    def within(points: np.ndarray, other: np.ndarray) -> float:
        if not points.any():
            return 0.0
        distance = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 5)
        return float((distance[points] <= tolerance).mean())

    pred_edge, true_edge = boundary(predicted), boundary(truth)
    precision, recall = within(pred_edge, true_edge), within(true_edge, pred_edge)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _summary(name: str, ious: list[float], fscores: list[float]) -> str:
    return (
        f"{name:<22} n={len(ious):3d}  IoU mean {statistics.mean(ious):.3f} "
        f"median {statistics.median(ious):.3f} p10 {np.percentile(ious, 10):.3f}  "
        f"BF mean {statistics.mean(fscores):.3f} median {statistics.median(fscores):.3f}"
    )


def _rank_correlation(a: list[float], b: list[float]) -> float:
    ranks_a = np.argsort(np.argsort(a)).astype(float)
    ranks_b = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def run_synthetic(frame: tuple[int, int], scales: list[float], positions: list[float]) -> None:
    results: dict[str, dict[str, list[float]]] = {}
    for person in people():
        for bg_name, background in backgrounds(frame).items():
            for scale in scales:
                for x_centre in positions:
                    image, truth, face = composite(person, background, scale, x_centre)
                    tolerance = 0.01 * float(np.hypot(*truth.shape))
                    for path, faces in (("faces", [face]), ("no faces", [])):
                        result = subject_mask(image, faces)
                        predicted = result.mask > 0.5
                        for key in (path, f"{path} / {bg_name}", f"{path} / {person.name}"):
                            row = results.setdefault(key, {"iou": [], "bf": [], "conf": []})
                            row["iou"].append(iou(predicted, truth))
                            row["bf"].append(boundary_f_score(predicted, truth, tolerance))
                            row["conf"].append(result.confidence)
    print(f"Synthetic composites, frame {frame[1]}x{frame[0]}, scales {scales}, x {positions}")
    for key in sorted(results, key=lambda k: (k.startswith("no"), "/" in k, k)):
        print(_summary(key, results[key]["iou"], results[key]["bf"]))
    for path in ("faces", "no faces"):
        row = results[path]
        empty = sum(1 for c in row["conf"] if c == 0.0)
        print(
            f"{path}: confidence vs IoU rank correlation "
            f"{_rank_correlation(row['conf'], row['iou']):+.2f}; zero-confidence results {empty}"
        )


def run_timing(repeats: int = 5) -> None:
    """Seconds per call on a 4 MP (2448x1632) composite."""
    frame = (1632, 2448)
    person = people()[0]
    image, _, face = composite(person, backgrounds(frame)["coffee"], 0.8, 0.5)
    for path, faces in (("faces", [face]), ("no faces", [])):
        subject_mask(image, faces)  # warm-up (imports, allocations)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subject_mask(image, faces)
            times.append(time.perf_counter() - start)
        print(
            f"timing 4 MP, {path:<8}: "
            f"median {statistics.median(times):.3f} s, max {max(times):.3f} s"
        )


def run_real_photos(out_dir: Path) -> None:
    photos = os.environ.get("PHOTOREMIX_PHOTOS_DIR")
    if not photos:
        raise SystemExit("set PHOTOREMIX_PHOTOS_DIR to the evaluation photos folder")
    root = Path(photos)
    cases = json.loads((root / "cases.json").read_text())
    contents = sorted({c["content"] for c in cases if c["tag"].startswith("portrait")})
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"Real portraits ({len(contents)}), overlays in {out_dir}")
    for relative in contents:
        image = np.asarray(Image.open(root / relative).convert("RGB"))
        faces = detect_faces(image)
        start = time.perf_counter()
        result = subject_mask(image, faces)
        elapsed = time.perf_counter() - start
        overlay = image.astype(np.float32)
        overlay *= 0.25 + 0.75 * result.mask[..., None]
        for face in faces:
            cv2.rectangle(overlay, face.box[:2], face.box[2:], (0, 255, 0), 2)
        name = relative.replace("/", "_").rsplit(".", 1)[0] + ".jpg"
        Image.fromarray(overlay.clip(0, 255).astype(np.uint8)).save(out_dir / name, quality=85)
        print(
            f"{relative:<45} {image.shape[1]}x{image.shape[0]} faces {len(faces)} "
            f"method {result.method:<6} coverage {result.mask.mean():.2f} "
            f"confidence {result.confidence:.2f} {elapsed:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer composites")
    parser.add_argument("--real-photos", type=Path, metavar="OUT_DIR", help="overlay folder")
    args = parser.parse_args()
    if args.quick:
        run_synthetic((480, 720), [0.7], [0.5])
    else:
        run_synthetic((640, 960), [0.55, 0.75, 0.95], [0.3, 0.5, 0.7])
    run_timing()
    if args.real_photos:
        run_real_photos(args.real_photos)


if __name__ == "__main__":
    main()
