"""A tiny random-weight Qwen-Image-Edit pipeline, built offline, for the qwen engine tests.

The recipe of /work/shared/docs/engines.md §3.2: every model is built from a small config
(the sizes diffusers' own QwenImageEditPlusPipeline test uses), the tokenizer is a byte-level
BPE written here (the 256 GPT-2 byte symbols plus Qwen's special tokens, no merges), and the
image processor is transformers' numpy Qwen2-VL processor. Nothing is downloaded. Saved with
``save_pretrained`` it is a diffusers weights folder laid out like Qwen-Image-Edit-2511's
(model_index.json, transformer/, vae/, text_encoder/, tokenizer/, processor/, scheduler/),
about 17 MB, which the engine loads like the real one.

The pipeline resizes every input image to ~1 MP for the VAE and to ~384x384 for the vision
encoder (module constants); on a CPU that makes a two-step call take minutes, so tests
shrink both with ``small_image_sizes``.

Import as ``from qwen_tiny import ...`` (pytest puts tests/ on sys.path); needs the qwen extra.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
)
from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
)

# Qwen's special tokens, in the order Qwen2.5-VL numbers them; the first one doubles as
# the unknown, end and padding token.
SPECIAL_TOKENS: Final = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Areas (pixels) the tests resize inputs to, instead of 1024*1024 (VAE) and 384*384
# (vision encoder): 64x64 is the smallest the 8x-downsampling VAE and the 2x2 patches take
# comfortably, 56x56 the smallest the vision encoder's 14-px patches, merged 2x2, allow.
TEST_VAE_IMAGE_AREA: Final = 64 * 64
TEST_CONDITION_IMAGE_AREA: Final = 56 * 56


def byte_level_alphabet() -> list[str]:
    """The 256 printable symbols byte-level BPE (GPT-2, Qwen) uses for the bytes 0..255."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols = {byte: chr(byte) for byte in printable}
    others = [byte for byte in range(256) if byte not in symbols]
    symbols.update({byte: chr(256 + n) for n, byte in enumerate(others)})
    return [symbols[byte] for byte in range(256)]


def build_tokenizer() -> Qwen2Tokenizer:
    """A 263-token byte-level Qwen2 tokenizer: every byte is one token, specials whole."""
    vocab = {symbol: index for index, symbol in enumerate(byte_level_alphabet())}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.json"
        merges_file = Path(folder) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n", encoding="utf-8")
        tokenizer = Qwen2Tokenizer(
            vocab_file=str(vocab_file),
            merges_file=str(merges_file),
            unk_token=SPECIAL_TOKENS[0],
            eos_token=SPECIAL_TOKENS[0],
            pad_token=SPECIAL_TOKENS[0],
        )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def build_pipeline(seed: int = 0) -> QwenImageEditPlusPipeline:
    """The tiny pipeline with random weights drawn from ``seed`` (float32, on the CPU)."""
    tokenizer = build_tokenizer()
    token_id = tokenizer.convert_tokens_to_ids

    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    latent_channels = 4
    vae = AutoencoderKLQwenImage(
        base_dim=latent_channels * 6,
        z_dim=latent_channels,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * latent_channels,
        latents_std=[1.0] * latent_channels,
    )
    text_config = Qwen2_5_VLConfig(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        rope_theta=1000000.0,
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        vocab_size=len(tokenizer),
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=token_id("<|endoftext|>"),
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(text_config)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer)
    return QwenImageEditPlusPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def save_tiny_pipeline(folder: Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and save it as a diffusers weights folder; returns ``folder``."""
    build_pipeline(seed).save_pretrained(folder)
    return folder


def save_tiny_lora(path: Path, seed: int = 1, rank: int = 4, strength: float = 10.0) -> Path:
    """A random LoRA for the tiny pipeline's transformer (its attention projections), saved
    as the .safetensors file ``path`` in diffusers' LoRA format; returns ``path``.

    Both LoRA matrices are random (peft's default makes one of them zero, a no-op) and the
    up-projections are multiplied by ``strength`` (diffusers' LoRA files carry no alpha):
    at 10, loading it changes the tiny pipeline's renders by ~9 grey levels on average.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = build_pipeline(seed).transformer
    torch.manual_seed(seed)
    transformer.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    layers = {
        name: weight * strength if "lora_B" in name else weight
        for name, weight in get_peft_model_state_dict(transformer).items()
    }
    QwenImageEditPlusPipeline.save_lora_weights(
        save_directory=path.parent, transformer_lora_layers=layers, weight_name=path.name
    )
    return path


@contextmanager
def small_image_sizes(
    vae_area: int = TEST_VAE_IMAGE_AREA, condition_area: int = TEST_CONDITION_IMAGE_AREA
) -> Iterator[None]:
    """Within the block, the pipeline resizes its input images to these areas (pixels)."""
    module = pipeline_qwenimage_edit_plus
    saved = module.VAE_IMAGE_SIZE, module.CONDITION_IMAGE_SIZE
    module.VAE_IMAGE_SIZE, module.CONDITION_IMAGE_SIZE = vae_area, condition_area
    try:
        yield
    finally:
        module.VAE_IMAGE_SIZE, module.CONDITION_IMAGE_SIZE = saved
