"""The qwen engine, driven end to end on a tiny random-weight Qwen-Image-Edit pipeline.

``qwen_tiny`` builds the pipeline offline (no hub access) and saves it as a weights folder;
the engine loads that folder exactly as it loads Qwen-Image-Edit-2511. The pipeline's input
resizes are shrunk (``small_image_sizes``) and the engine renders at a tiny working area,
so one two-step render takes about a second on a CPU. Every engine test runs on the CPU
in float32 and, when torch sees a CUDA GPU, again on it in bf16.

The tests that render need the qwen extra; without it they are skipped with that reason
(pip install -e '.[qwen]'). The ``problem`` and sizing tests run either way.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from photoremix.engines import EngineError, IdentityImage, RemixRequest, get_engine, qwen
from photoremix.engines.qwen import QwenEngine, problem, resize_to, working_size
from photoremix.imaging import decode_image, output_size_2k
from photoremix.settings import Settings
from service_support import b64_jpeg, gradient_image, running_service

# Nothing here may reach the Hugging Face hub: set before diffusers/transformers import
# huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"

QWEN_EXTRA_INSTALLED = all(
    importlib.util.find_spec(name) is not None for name in qwen.REQUIRED_MODULES
)
needs_qwen_extra = pytest.mark.skipif(
    not QWEN_EXTRA_INSTALLED,
    reason=(
        "the qwen extra is not installed, so the qwen engine cannot be tested: "
        "pip install -e '.[qwen]'"
    ),
)

# The engine renders at 48x32 for the 3:2 content below (working_size of this area).
TEST_WORKING_AREA = 48 * 32
CONTENT_SHAPE = (64, 96)  # (height, width): 3:2
OUTPUT_SIZE = (90, 60)  # (width, height): not a multiple of 16, to check exactness


def _devices() -> list[str]:
    if not QWEN_EXTRA_INSTALLED:
        return ["cpu"]
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def qwen_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "qwen_device": "cpu",
        "qwen_steps": 2,
        "qwen_true_cfg_scale": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


def photo(seed: int, shape: tuple[int, int] = CONTENT_SHAPE) -> np.ndarray:
    """Smooth random colours: (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC)


def remix_request(**overrides: Any) -> RemixRequest:
    values: dict[str, Any] = {
        "content": photo(1),
        "reference": photo(2, (50, 50)),
        "output_size": OUTPUT_SIZE,
        "faces": (),
        "seed": 7,
    }
    values.update(overrides)
    return RemixRequest(**values)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- fixtures: the tiny weights folder and one engine per device -------------------------


@pytest.fixture(scope="module")
def small_sizes() -> Iterator[None]:
    """The pipeline's input resizes shrunk for the rest of the module (see qwen_tiny)."""
    from qwen_tiny import small_image_sizes

    with small_image_sizes():
        yield


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qwen_tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("qwen-tiny"))


@pytest.fixture(scope="module", params=_devices())
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def engine(
    tiny_weights: Path, device: str, small_sizes: None, tmp_path_factory: pytest.TempPathFactory
) -> QwenEngine:
    settings = qwen_settings(
        tmp_path_factory.mktemp("data"), qwen_model_dir=tiny_weights, qwen_device=device
    )
    return QwenEngine(settings, working_area=TEST_WORKING_AREA)


class PipelineSpy:
    """Stands in for the engine's pipeline: records each call's arguments, then renders."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.pipeline(**kwargs)


@pytest.fixture
def spied(engine: QwenEngine, monkeypatch: pytest.MonkeyPatch) -> PipelineSpy:
    spy = PipelineSpy(engine._pipeline)
    monkeypatch.setattr(engine, "_pipeline", spy)
    return spy


# --- sizing (no extra needed) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"), [(4000, 3000), (1080, 1920), (500, 500), (6000, 2000)]
)
def test_working_size_is_about_one_megapixel_in_multiples_of_16(width: int, height: int) -> None:
    work_width, work_height = working_size(width, height)

    assert work_width % 16 == 0 and work_height % 16 == 0
    assert abs(work_width * work_height / qwen.WORKING_AREA - 1) < 0.05
    # Rounding each side to 16 px moves the ratio by at most half a step per side.
    assert abs(math.log((work_width / work_height) / (width / height))) < 0.02


def test_working_size_never_drops_below_one_step_and_refuses_bad_sides() -> None:
    work_width, work_height = working_size(10_000, 10, area=64 * 64)
    assert work_height == 16  # the exact height (2 px) rounds to 0
    assert work_width % 16 == 0 and work_width > 1000
    with pytest.raises(ValueError, match="positive"):
        working_size(0, 10)


@pytest.mark.parametrize("size", [(90, 60), (20, 12)], ids=["grow", "shrink"])
def test_resize_to_gives_exactly_the_size(size: tuple[int, int]) -> None:
    image = photo(3, (32, 48))

    resized = resize_to(image, size)

    assert resized.shape == (size[1], size[0], 3)
    assert resized.dtype == np.uint8 and resized.flags.c_contiguous
    # Still the same picture: its mean colour survives the resize.
    assert np.abs(resized.mean(axis=(0, 1)) - image.mean(axis=(0, 1))).max() < 4


# --- problem(): what an operator must fix -----------------------------------------------------


def test_problem_names_the_missing_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_diffusers(name: str, *args: Any) -> Any:
        return None if name == "diffusers" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_diffusers)

    reason = problem(qwen_settings(tmp_path, qwen_model_dir=tmp_path))

    assert reason is not None
    assert "diffusers" in reason and "photoremix[qwen]" in reason


@needs_qwen_extra
def test_problem_names_each_thing_to_fix(tmp_path: Path, tiny_weights: Path) -> None:
    def reason(**overrides: Any) -> str:
        found = problem(qwen_settings(tmp_path, **overrides))
        assert found is not None
        return found

    assert problem(qwen_settings(tmp_path, qwen_model_dir=tiny_weights)) is None
    assert "PHOTOREMIX_QWEN_MODEL_DIR is not set" in reason()
    missing = tmp_path / "nowhere"
    assert f"{missing} does not exist" in reason(qwen_model_dir=missing)
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    assert f"{a_file} is not a folder" in reason(qwen_model_dir=a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no model_index.json" in reason(qwen_model_dir=empty)
    partial = tmp_path / "partial"
    shutil.copytree(tiny_weights, partial)
    shutil.rmtree(partial / "vae")
    assert "no vae folder" in reason(qwen_model_dir=partial)
    other = tmp_path / "other"
    shutil.copytree(tiny_weights, other)
    index = json.loads((other / "model_index.json").read_text())
    del index["processor"]
    (other / "model_index.json").write_text(json.dumps(index))
    assert "lacks processor" in reason(qwen_model_dir=other)
    lora = tmp_path / "lightning.safetensors"
    assert f"names {lora}, which is not a file" in reason(
        qwen_model_dir=tiny_weights, qwen_lora_paths=[str(lora)]
    )
    assert "cpu, cuda or cuda:N" in reason(qwen_model_dir=tiny_weights, qwen_device="gpu")


# --- start-up errors -------------------------------------------------------------------------


@needs_qwen_extra
def test_missing_weights_folder_fails_at_construction_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "Qwen-Image-Edit-2511"

    with pytest.raises(EngineError, match="cannot start") as caught:
        QwenEngine(qwen_settings(tmp_path, qwen_model_dir=missing))

    assert str(missing) in str(caught.value)
    with pytest.raises(EngineError, match=str(missing)):
        get_engine("qwen", qwen_settings(tmp_path, qwen_model_dir=missing))


@needs_qwen_extra
def test_corrupt_weights_fail_at_construction_naming_the_folder(
    tmp_path: Path, tiny_weights: Path
) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_weights, corrupt)
    (corrupt / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")

    with pytest.raises(EngineError, match="do not load as a Qwen-Image-Edit pipeline") as caught:
        QwenEngine(qwen_settings(tmp_path, qwen_model_dir=corrupt))

    assert str(corrupt) in str(caught.value)


@needs_qwen_extra
def test_cuda_without_a_gpu_fails_at_construction(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(EngineError, match="PHOTOREMIX_QWEN_DEVICE=cpu"):
        QwenEngine(qwen_settings(tmp_path, qwen_model_dir=tiny_weights, qwen_device="cuda"))


# --- rendering -------------------------------------------------------------------------------


@needs_qwen_extra
def test_outputs_have_the_output_size_and_reports(engine: QwenEngine) -> None:
    progress: list[tuple[int, int]] = []

    outputs = engine.remix(remix_request(num_outputs=2), lambda *done: progress.append(done))

    assert len(outputs) == 2
    for index, output in enumerate(outputs):
        assert output.image.shape == (OUTPUT_SIZE[1], OUTPUT_SIZE[0], 3)
        assert output.image.dtype == np.uint8
        report = output.report
        assert (report.engine, report.seed, report.variation) == ("qwen", 7 + index, index)
        assert report.applied["working_size"] == [48, 32]
        assert report.applied["steps"] == 2
        assert report.applied["device"] == engine.device
        assert report.applied["faces_in_content"] == 0
        assert set(report.timings) == {"detect_faces", "prepare", "generate", "resize"}
    assert progress == [(1, 2), (2, 2)]
    # Random weights still render something, not a flat or empty image.
    assert outputs[0].image.std() > 1


@needs_qwen_extra
def test_same_seed_same_pixels_other_seed_other_pixels(engine: QwenEngine) -> None:
    first = engine.remix(remix_request(seed=11))[0].image
    again = engine.remix(remix_request(seed=11))[0].image
    other = engine.remix(remix_request(seed=12))[0].image

    np.testing.assert_array_equal(first, again)
    assert mean_difference(first, other) > 1


@needs_qwen_extra
def test_variation_offset_renders_that_variation_alone(engine: QwenEngine) -> None:
    both = engine.remix(remix_request(seed=20, num_outputs=2))

    (second,) = engine.remix(remix_request(seed=20, variation_offset=1))

    assert (second.report.seed, second.report.variation) == (21, 1)
    np.testing.assert_array_equal(second.image, both[1].image)
    assert mean_difference(both[0].image, both[1].image) > 1


@needs_qwen_extra
def test_what_the_pipeline_is_given(engine: QwenEngine, spied: PipelineSpy) -> None:
    content, reference = photo(1), photo(2, (50, 50))
    identities = (
        IdentityImage("the person on the left", photo(3, (40, 32))),
        IdentityImage("the person on the right", photo(4, (40, 32))),
    )

    (output,) = engine.remix(
        remix_request(
            content=content,
            reference=reference,
            identities=identities,
            prompt="let the person on the left wear a red scarf",
            seed=30,
        )
    )

    (call,) = spied.calls
    # Content, reference and one identity photo: the model's three-image optimum.
    sent = [np.asarray(image) for image in call["image"]]
    assert len(sent) == qwen.MAX_INPUT_IMAGES
    np.testing.assert_array_equal(sent[0], content)
    np.testing.assert_array_equal(sent[1], reference)
    np.testing.assert_array_equal(sent[2], identities[0].image)
    prompt = call["prompt"]
    assert "Picture 1 is the content photo" in prompt
    assert "Picture 2 is the style reference" in prompt
    assert "Picture 3 shows the person on the left" in prompt
    assert prompt.rstrip().endswith("let the person on the left wear a red scarf")
    assert (call["width"], call["height"]) == (48, 32)
    assert call["num_inference_steps"] == 2
    assert call["generator"].initial_seed() == 30
    # true_cfg_scale 1: no negative prompt, so no second (unconditional) pass.
    assert call["true_cfg_scale"] == 1.0 and call["negative_prompt"] is None
    assert output.report.applied["identity_photos"] == ["the person on the left"]
    assert output.report.applied["identity_photos_left_out"] == ["the person on the right"]


@needs_qwen_extra
def test_true_cfg_sends_a_negative_prompt_and_changes_the_image(
    engine: QwenEngine, spied: PipelineSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = engine.remix(remix_request(seed=40))[0].image
    monkeypatch.setattr(engine, "true_cfg_scale", 4.0)

    (guided,) = engine.remix(remix_request(seed=40))

    assert spied.calls[-1]["negative_prompt"] == qwen.NEGATIVE_PROMPT
    assert spied.calls[-1]["true_cfg_scale"] == 4.0
    assert guided.report.applied["true_cfg_scale"] == 4.0
    # The random text encoder embeds both prompts alike, so the guided image differs
    # only a little; without the second pass it would be identical.
    assert not np.array_equal(plain, guided.image)


@needs_qwen_extra
def test_identity_protection_makes_the_face_wording_stricter(
    engine: QwenEngine, spied: PipelineSpy
) -> None:
    engine.remix(remix_request(seed=50))
    engine.remix(remix_request(seed=50, identity_protection=1.0))

    normal, protected = (call["prompt"] for call in spied.calls)
    assert "exactly as it is" not in normal
    assert "exactly as it is" in protected


@needs_qwen_extra
def test_a_lora_is_fused_and_changes_the_image(
    engine: QwenEngine, tiny_weights: Path, device: str, tmp_path: Path
) -> None:
    import torch

    from qwen_tiny import save_tiny_lora

    lora = save_tiny_lora(tmp_path / "tiny-lora.safetensors")
    settings = qwen_settings(
        tmp_path, qwen_model_dir=tiny_weights, qwen_device=device, qwen_lora_paths=[str(lora)]
    )
    with_lora = QwenEngine(settings, working_area=TEST_WORKING_AREA)

    (styled,) = with_lora.remix(remix_request(seed=60))
    (plain,) = engine.remix(remix_request(seed=60))

    assert styled.report.applied["loras"] == ["tiny-lora.safetensors"]
    assert mean_difference(styled.image, plain.image) > 1
    # Fused: the LoRA is in the base weights and no adapter layers are left to run.
    fused = with_lora._pipeline.transformer
    assert not any("lora" in name for name, _ in fused.named_parameters())
    base_weight = engine._pipeline.transformer.transformer_blocks[0].attn.to_q.weight
    fused_weight = fused.transformer_blocks[0].attn.to_q.weight
    assert not torch.allclose(fused_weight.detach().cpu(), base_weight.detach().cpu())


@needs_qwen_extra
def test_a_file_that_is_no_lora_fails_at_construction(tmp_path: Path, tiny_weights: Path) -> None:
    from safetensors.numpy import save_file

    not_a_lora = tmp_path / "not-a-lora.safetensors"
    save_file({"unrelated.weight": np.zeros((2, 2), np.float32)}, str(not_a_lora))
    settings = qwen_settings(
        tmp_path, qwen_model_dir=tiny_weights, qwen_lora_paths=[str(not_a_lora)]
    )

    with pytest.raises(EngineError, match="does not load into Qwen-Image-Edit") as caught:
        QwenEngine(settings, working_area=TEST_WORKING_AREA)

    assert str(not_a_lora) in str(caught.value)


# --- through the HTTP service ------------------------------------------------------------------


@needs_qwen_extra
def test_remix_endpoint_renders_with_qwen(
    engine: QwenEngine, tiny_weights: Path, device: str, tmp_path: Path
) -> None:
    content = gradient_image(192, 288)
    configured_for_qwen = {
        # The field's environment name: Settings reads default_engine by its alias only.
        "PHOTOREMIX_DEFAULT_ENGINE": "qwen",
        "engines": ["classic", "qwen"],
        "qwen_model_dir": tiny_weights,
        "qwen_device": device,
    }
    with running_service(tmp_path, engine=engine, **configured_for_qwen) as api:
        assert api.service.engines["qwen"] is engine
        fields = {"input_image": b64_jpeg(content), "seed": 5}
        first = api.remix(**fields, num_output_images=2)
        again = api.remix(**fields, engine="qwen")
        listed = api.client.get("/v1/engines", headers=api.headers)

    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    body = first.json()
    assert [report["engine"] for report in body["reports"]] == ["qwen", "qwen"]
    assert [report["seed"] for report in body["reports"]] == [5, 6]
    assert body["reports"][0]["applied"]["working_size"] == [48, 32]
    images = [decode_image(base64.b64decode(image)) for image in body["images"]]
    width, height = output_size_2k(288, 192)
    assert all(image.shape == (height, width, 3) for image in images)
    # Same seed, same pixels, through encoding and the service's own checks.
    repeated = decode_image(base64.b64decode(again.json()["images"][0]))
    np.testing.assert_array_equal(repeated, images[0])
    assert mean_difference(images[0], images[1]) > 1
    engines = {info["name"]: info for info in listed.json()["engines"]}
    assert engines["qwen"]["ready"] and engines["qwen"]["default"]


@needs_qwen_extra
def test_service_configured_with_missing_weights_does_not_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-weights"

    with (
        pytest.raises(RuntimeError, match="PHOTOREMIX_QWEN_MODEL_DIR") as caught,
        running_service(
            tmp_path,
            default_engine="classic",
            engines=["classic", "qwen"],
            qwen_model_dir=missing,
        ),
    ):
        pass

    assert str(missing) in str(caught.value)
