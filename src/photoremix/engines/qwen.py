"""The qwen engine: remix with Qwen-Image-Edit-2511 through diffusers, on this server's GPU.

The weights come from a local folder in the diffusers layout (``PHOTOREMIX_QWEN_MODEL_DIR``,
e.g. a download of ``Qwen/Qwen-Image-Edit-2511``). ``QwenEngine(settings)`` loads them once,
with the optional LoRAs of ``PHOTOREMIX_QWEN_LORA_PATHS`` fused in (a few-step Lightning
LoRA, say), and keeps them on the device: bf16 on CUDA, float32 on the CPU. A folder that is
missing or does not load raises ``EngineError`` there, at start-up, not at the first request.

Each output image is one ``QwenImageEditPlusPipeline`` call (the pipeline renders one image
per call) with:

- ``image=[content, reference, identity photos...]``: the pipeline prefixes its prompt with
  "Picture 1: <image> Picture 2: <image> ...", so the instruction names the images
  "Picture N" (``prompting.remix_instruction``). The model works best with at most three
  input images (Qwen-Image-Edit-2509 model card), and every image adds a ~1 MP latent to the
  transformer's sequence, so identity photos beyond MAX_INPUT_IMAGES are left out and
  reported.
- explicit ``width``/``height``: about WORKING_AREA pixels with the content's aspect ratio,
  in multiples of SIZE_MULTIPLE (``working_size``). Left unset, the pipeline would take the
  aspect ratio of the last input image.
- ``num_inference_steps`` = ``qwen_steps``, ``true_cfg_scale`` = ``qwen_true_cfg_scale``; the
  pipeline only applies CFG when it also gets a negative prompt, so one (" ", as in the
  model card) is sent whenever the scale is above 1.
- a CPU ``torch.Generator`` seeded with ``seed + i`` for variation ``i``: the initial noise is
  drawn on the CPU, so a seed gives the same noise on any device.

The result is resized to the exact ``output_size`` (bicubic up, area down). The working size
has the content's aspect ratio up to the rounding to SIZE_MULTIPLE (half a step per side at
most, about 1 % at 1 MP), so this resize stretches that little and never crops.

One pipeline serves every request of the process; a lock makes calls take turns (diffusers
pipelines keep per-call state on the scheduler, and one GPU runs one call at a time anyway).

Needs the ``qwen`` extra (torch, diffusers, transformers, accelerate, peft); this module
imports them only inside ``QwenEngine``, so it can be imported, and ``problem`` called,
without them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import cv2
import numpy as np
from PIL import Image

from photoremix.engines.base import (
    EngineError,
    IdentityImage,
    ImageReport,
    ProgressCallback,
    RemixOutput,
    RemixRequest,
)
from photoremix.engines.prompting import (
    ROLE_CONTENT,
    ROLE_IDENTITY,
    ROLE_REFERENCE,
    identities_within,
    identity_report,
    remix_instruction,
    strength_note,
)
from photoremix.settings import Settings
from photoremix.vision.faces import detect_faces

if TYPE_CHECKING:
    from diffusers import QwenImageEditPlusPipeline

log = logging.getLogger(__name__)

ENGINE_NAME: Final = "qwen"
INSTALL_HINT: Final = "pip install 'photoremix[qwen]'"
# Import names of the packages the qwen extra installs; peft only matters with LoRAs.
REQUIRED_MODULES: Final = ("torch", "diffusers", "transformers", "accelerate")
LORA_MODULE: Final = "peft"
# Sub-folders a Qwen-Image-Edit weights folder has, each listed in its model_index.json.
COMPONENTS: Final = ("transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler")

# The model's native working resolution (~1 MP, engines.md §2.1) and the pipeline's size
# step (VAE downsampling 8 x 2x2 latent patches).
WORKING_AREA: Final = 1024 * 1024
SIZE_MULTIPLE: Final = 16
# Content + reference + one identity photo: the model card's "1 to 3 input images".
MAX_INPUT_IMAGES: Final = 3
# What the pipeline calls its inputs in the prompt it builds ("Picture 1: ...").
IMAGE_LABEL: Final = "Picture"
# The model card's negative prompt; only its presence matters (it switches true CFG on).
NEGATIVE_PROMPT: Final = " "
# torch.Generator.manual_seed takes 64-bit seeds.
SEED_MASK: Final = 0xFFFF_FFFF_FFFF_FFFF
DEVICE_PATTERN: Final = re.compile(r"cpu|cuda(:\d+)?")


def problem(settings: Settings) -> str | None:
    """Why the qwen engine cannot run with ``settings``: a sentence, or None.

    Cheap: looks packages up without importing them and reads model_index.json; it does
    not check that a GPU is present (that needs torch) nor load weights: ``QwenEngine``
    does both and raises EngineError.
    """
    wanted = [*REQUIRED_MODULES, *([LORA_MODULE] if settings.qwen_lora_paths else [])]
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        return f"the qwen extra is not installed (missing {', '.join(missing)}; {INSTALL_HINT})"
    if DEVICE_PATTERN.fullmatch(settings.qwen_device) is None:
        return f"PHOTOREMIX_QWEN_DEVICE must be cpu, cuda or cuda:N, got {settings.qwen_device!r}"
    model_dir = settings.qwen_model_dir
    if model_dir is None:
        return (
            "PHOTOREMIX_QWEN_MODEL_DIR is not set (a folder of Qwen-Image-Edit-2511 weights "
            "in the diffusers layout)"
        )
    folder_problem = _weights_folder_problem(model_dir.expanduser())
    if folder_problem is not None:
        return folder_problem
    for lora in settings.qwen_lora_paths:
        if not Path(lora).expanduser().is_file():
            return f"PHOTOREMIX_QWEN_LORA_PATHS names {lora}, which is not a file"
    return None


def _weights_folder_problem(model_dir: Path) -> str | None:
    if not model_dir.exists():
        return f"PHOTOREMIX_QWEN_MODEL_DIR {model_dir} does not exist"
    if not model_dir.is_dir():
        return f"PHOTOREMIX_QWEN_MODEL_DIR {model_dir} is not a folder"
    index_file = model_dir / "model_index.json"
    if not index_file.is_file():
        return (
            f"PHOTOREMIX_QWEN_MODEL_DIR {model_dir} has no model_index.json: it is not a "
            "diffusers weights folder (download Qwen/Qwen-Image-Edit-2511 into it)"
        )
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{index_file} cannot be read as JSON ({error})"
    if not isinstance(index, dict):
        return f"{index_file} is not a diffusers model index (expected a JSON object)"
    absent = [name for name in COMPONENTS if name not in index]
    if absent:
        return (
            f"{index_file} lacks {', '.join(absent)}: not a Qwen-Image-Edit pipeline "
            "(expected the Qwen-Image-Edit-2511 layout)"
        )
    missing_folders = [name for name in COMPONENTS if not (model_dir / name).is_dir()]
    if missing_folders:
        return (
            f"PHOTOREMIX_QWEN_MODEL_DIR {model_dir} has no {', '.join(missing_folders)} "
            "folder (an incomplete download?)"
        )
    return None


def working_size(
    width: int, height: int, area: int = WORKING_AREA, multiple: int = SIZE_MULTIPLE
) -> tuple[int, int]:
    """(width, height) of about ``area`` pixels with the aspect ratio of ``width`` x
    ``height``, both sides rounded to multiples of ``multiple`` (at least one multiple).

    Raises ValueError if a side or ``area`` is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"Image sides must be positive, got {width}x{height}.")
    if area <= 0:
        raise ValueError(f"The working area must be positive, got {area}.")
    ratio = width / height
    exact_width = math.sqrt(area * ratio)
    exact_height = exact_width / ratio
    return (
        max(multiple, round(exact_width / multiple) * multiple),
        max(multiple, round(exact_height / multiple) * multiple),
    )


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` ((H, W, 3) uint8) resized to ``size`` = (width, height): bicubic when it
    grows, area averaging when it shrinks. Returns a C-contiguous (height, width, 3) uint8."""
    height, width = image.shape[:2]
    if (width, height) == size:
        return np.ascontiguousarray(image)
    shrinking = size[0] * size[1] < width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation))


class QwenEngine:
    """Remix with Qwen-Image-Edit; see the module docstring for what is sent."""

    name = ENGINE_NAME

    def __init__(self, settings: Settings, *, working_area: int = WORKING_AREA) -> None:
        """Load the weights (and LoRAs) onto ``settings.qwen_device``.

        working_area: pixels of the size the model renders at before the resize to the
            output size; tests lower it to render a tiny model quickly.

        Raises EngineError, naming the setting or folder to fix, when the engine cannot run.
        """
        reason = problem(settings)
        if reason is not None or settings.qwen_model_dir is None:
            raise EngineError(f"the qwen engine cannot start: {reason}")
        import torch

        self.device = settings.qwen_device
        on_cuda = self.device.startswith("cuda")
        if on_cuda and not torch.cuda.is_available():
            raise EngineError(
                "the qwen engine cannot start: PHOTOREMIX_QWEN_DEVICE is "
                f"{self.device!r} but torch sees no CUDA GPU (torch {torch.__version__}, "
                "built without CUDA or no driver); set PHOTOREMIX_QWEN_DEVICE=cpu to run "
                "(very slowly) on the CPU"
            )
        self.dtype = torch.bfloat16 if on_cuda else torch.float32
        self.cpu_offload = settings.qwen_cpu_offload and on_cuda
        self.steps = settings.qwen_steps
        self.true_cfg_scale = settings.qwen_true_cfg_scale
        self.working_area = working_area
        self.model_dir = settings.qwen_model_dir.expanduser()
        self.loras = [Path(path).expanduser() for path in settings.qwen_lora_paths]
        started = time.perf_counter()
        self._pipeline = self._load_pipeline()
        self.load_seconds = time.perf_counter() - started
        self._lock = threading.Lock()
        log.info(
            "qwen engine ready",
            extra={
                "model_dir": str(self.model_dir),
                "device": self.device,
                "loras": [str(path) for path in self.loras],
                "seconds": round(self.load_seconds, 1),
            },
        )

    def _load_pipeline(self) -> QwenImageEditPlusPipeline:
        from diffusers import QwenImageEditPlusPipeline

        try:
            pipeline = QwenImageEditPlusPipeline.from_pretrained(
                str(self.model_dir), torch_dtype=self.dtype, local_files_only=True
            )
        except Exception as error:  # any failure here means the folder is not usable
            raise EngineError(
                f"the qwen engine cannot start: the weights in {self.model_dir} do not load "
                f"as a Qwen-Image-Edit pipeline ({type(error).__name__}: {error})"
            ) from error
        if self.loras:
            self._fuse_loras(pipeline)
        if self.cpu_offload:
            pipeline.enable_model_cpu_offload(device=self.device)
        else:
            pipeline.to(self.device)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def _fuse_loras(self, pipeline: QwenImageEditPlusPipeline) -> None:
        """Load every LoRA and fuse them into the weights at full scale: they stay for the
        life of the process, so fusing saves the adapters' extra work on every step."""
        names = [f"lora_{index}" for index in range(len(self.loras))]
        for name, path in zip(names, self.loras, strict=True):
            try:
                # weight_name: diffusers cannot guess a file name offline.
                pipeline.load_lora_weights(
                    str(path.parent), weight_name=path.name, adapter_name=name
                )
            except Exception as error:
                raise EngineError(
                    f"the qwen engine cannot start: the LoRA {path} does not load into "
                    f"Qwen-Image-Edit ({type(error).__name__}: {error})"
                ) from error
        pipeline.set_adapters(names, adapter_weights=[1.0] * len(names))
        pipeline.fuse_lora(adapter_names=names, lora_scale=1.0)
        pipeline.unload_lora_weights()  # drops the adapter layers; the fused weights stay

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        started = time.perf_counter()
        faces = request.faces if request.faces is not None else detect_faces(request.content)
        t_faces = time.perf_counter()

        # two inputs are the content and the reference
        sent_identities, left_out = identities_within(request.identities, MAX_INPUT_IMAGES - 2)
        images = [
            Image.fromarray(np.ascontiguousarray(picture))
            for picture in (
                request.content,
                request.reference,
                *(identity.image for identity in sent_identities),
            )
        ]
        instruction = self._instruction(request, sent_identities, len(faces))
        content_height, content_width = request.content.shape[:2]
        width, height = working_size(content_width, content_height, self.working_area)
        shared_timings = {
            "detect_faces": t_faces - started if request.faces is None else 0.0,
            "prepare": time.perf_counter() - t_faces,
        }
        applied_shared: dict[str, Any] = {
            "model": self.model_dir.name,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "cpu_offload": self.cpu_offload,
            "loras": [path.name for path in self.loras],
            "steps": self.steps,
            "true_cfg_scale": self.true_cfg_scale,
            "working_size": [width, height],
            **identity_report(
                len(faces),
                sent_identities,
                left_out,
                request.identity_protection,
                request.style_strength,
            ),
        }

        outputs: list[RemixOutput] = []
        first = request.variation_offset
        for index in range(first, first + request.num_outputs):
            seed = request.seed + index
            t0 = time.perf_counter()
            rendered = self._render(images, instruction, width, height, seed)
            t_render = time.perf_counter()
            image = resize_to(rendered, request.output_size)
            report = ImageReport(
                engine=ENGINE_NAME,
                seed=seed,
                variation=index,
                variation_description=f"an independent sample of the same edit (seed {seed})",
                applied={
                    **applied_shared,
                    "resize": _resize_description((width, height), request.output_size),
                },
                timings={
                    **shared_timings,
                    "generate": t_render - t0,
                    "resize": time.perf_counter() - t_render,
                },
            )
            outputs.append(RemixOutput(image=image, report=report))
            if progress is not None:
                progress(len(outputs), request.num_outputs)
        return outputs

    def _instruction(
        self, request: RemixRequest, identities: Sequence[IdentityImage], face_count: int
    ) -> str:
        roles = [ROLE_CONTENT, ROLE_REFERENCE, *([ROLE_IDENTITY] * len(identities))]
        return remix_instruction(
            request.prompt,
            [identity.name for identity in identities],
            request.identity_protection,
            roles,
            image_label=IMAGE_LABEL,
            face_count=face_count,
            notes=[strength_note(request.style_strength)],
        )

    def _render(
        self, images: list[Image.Image], instruction: str, width: int, height: int, seed: int
    ) -> np.ndarray:
        """One pipeline call: a (height, width, 3) uint8 image."""
        import torch

        generator = torch.Generator(device="cpu").manual_seed(seed & SEED_MASK)
        use_cfg = self.true_cfg_scale > 1
        try:
            with self._lock:
                result = self._pipeline(
                    image=images,
                    prompt=instruction,
                    negative_prompt=NEGATIVE_PROMPT if use_cfg else None,
                    true_cfg_scale=self.true_cfg_scale,
                    width=width,
                    height=height,
                    num_inference_steps=self.steps,
                    generator=generator,
                    output_type="np",
                )
        except torch.cuda.OutOfMemoryError as error:
            log.exception("qwen render ran out of GPU memory")
            raise EngineError(
                "the qwen engine ran out of GPU memory; the operator can enable "
                "PHOTOREMIX_QWEN_CPU_OFFLOAD"
            ) from error
        except (RuntimeError, ValueError) as error:
            log.exception("qwen render failed")
            message = "the qwen engine failed while rendering (the server log has the cause)"
            raise EngineError(message) from error
        # (1, H, W, 3) float32 in 0..1.
        rendered = np.asarray(result.images[0], dtype=np.float32)
        return np.clip(np.rint(rendered * 255.0), 0, 255).astype(np.uint8)


def _resize_description(working: tuple[int, int], size: tuple[int, int]) -> str:
    (width, height), (target_width, target_height) = working, size
    method = "area" if target_width * target_height < width * height else "bicubic"
    return (
        f"{method} resize from {width}x{height} to {target_width}x{target_height} "
        f"(x{target_width / width:.3f} across, x{target_height / height:.3f} down)"
    )
