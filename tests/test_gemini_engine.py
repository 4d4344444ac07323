"""The gemini engine, through the real google-genai SDK, against a fake Gemini API served
over loopback HTTP (``FakeGemini``), plus its pure helpers (sizes, ratios, prompt text)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image

from photoremix.engines import get_engine
from photoremix.engines.base import EngineError, IdentityImage, RemixRequest
from photoremix.engines.gemini import (
    ContentModerationError,
    GeminiEngine,
    fit_to_size,
    model_limits,
    nearest_aspect_ratio,
    problem,
    variation_for,
)
from photoremix.engines.prompting import remix_instruction
from photoremix.imaging import output_size_2k
from photoremix.settings import Settings
from photoremix.vision.faces import detect_faces

MODEL = "gemini-3.1-flash-image"
GENERATE_PATH = f"/v1beta/models/{MODEL}:generateContent"


# --- the fake server --------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: HTTP status, JSON body, and a delay before answering."""

    body: dict[str, Any]
    status: int = 200
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return self.body["contents"][0]["parts"]

    @property
    def text(self) -> str:
        return "".join(part.get("text", "") for part in self.parts)

    @property
    def images(self) -> list[dict[str, Any]]:
        return [part["inlineData"] for part in self.parts if "inlineData" in part]


@dataclass
class FakeGemini:
    """Answers POST /v1beta/models/{model}:generateContent with ``replies`` in arrival order
    (the last one repeats), recording each request and the most requests in flight."""

    replies: list[Reply]
    received: list[Received] = field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self._lock:
            self.received.append(Received(path, headers, body))
            reply = self.replies[min(len(self.received), len(self.replies)) - 1]
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        time.sleep(reply.delay_s)
        with self._lock:
            self._in_flight -= 1
        return reply


@pytest.fixture
def serve() -> Iterator[Any]:
    """serve(*replies) -> (FakeGemini, base URL); servers stop after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(*replies: Reply) -> tuple[FakeGemini, str]:
        fake = FakeGemini(list(replies))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                if not self.path.endswith(":generateContent"):
                    self.send_error(404)
                    return
                reply = fake.handle(self.path, dict(self.headers), body)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True  # a handler still sleeping must not block shutdown
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return fake, f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def image_part(width: int, height: int, colour: tuple[int, int, int]) -> dict[str, Any]:
    """A reply part holding a one-colour PNG, the way the REST API sends images."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return {"inlineData": {"mimeType": "image/png", "data": data}}


def image_reply(
    width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40), delay_s: float = 0.0
) -> Reply:
    parts = [{"text": "Here is the restyled photo."}, image_part(width, height, colour)]
    content = {"role": "model", "parts": parts}
    return Reply({"candidates": [{"content": content, "finishReason": "STOP"}]}, delay_s=delay_s)


def text_reply(text: str) -> Reply:
    return Reply(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
            ]
        }
    )


def error_reply(code: int, status: str, message: str) -> Reply:
    return Reply({"error": {"code": code, "status": status, "message": message}}, status=code)


def make_engine(base_url: str, **overrides: Any) -> GeminiEngine:
    values: dict[str, Any] = {
        "gemini_api_key": "test-key",
        "gemini_base_url": base_url,
        "gemini_model": MODEL,
        "gemini_timeout_s": 10.0,
        "gemini_retries": 2,
        "gemini_concurrency": 4,
        **overrides,
    }
    return GeminiEngine(Settings(**values), backoff_initial_s=0.01, backoff_max_s=0.05)


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like (height, width, 3) uint8 image: a colour ramp plus noise.

    (Uniform noise would not do: it does not compress, and JPEG encoding fails on it.)
    """
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(60, 200, 3)
    noise = rng.normal(40, 20, (height, width, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def request_for(content: np.ndarray, **overrides: Any) -> RemixRequest:
    values: dict[str, Any] = {
        "content": content,
        "reference": picture(300, 200, seed=1),
        "output_size": (320, 240),
        "faces": (),
        **overrides,
    }
    return RemixRequest(**values)


# --- the engine over HTTP ---------------------------------------------------------------


def test_success_sends_roles_images_and_config_and_returns_the_exact_output_size(
    serve: Any, astronaut: np.ndarray
) -> None:
    content = picture(640, 480)
    output_size = output_size_2k(640, 480)
    # Gemini's 4:3 2K image is 2400x1792: not the output size, so it must be fitted.
    fake, url = serve(image_reply(2400, 1792))
    engine = make_engine(url)
    crop = astronaut[:200, 150:350]
    request = request_for(
        content,
        output_size=output_size,
        prompt="no sunglasses; let the person on the left wear an Argentina jersey",
        identities=(IdentityImage("the person on the left", crop),),
        seed=7,
    )
    progress: list[tuple[int, int]] = []

    outputs = engine.remix(request, lambda done, total: progress.append((done, total)))
    engine.close()

    assert len(outputs) == 1
    image = outputs[0].image
    assert image.shape == (output_size[1], output_size[0], 3)
    assert image.dtype == np.uint8
    assert np.abs(image.astype(int) - [200, 40, 40]).max() <= 1  # the returned image, fitted
    assert progress == [(1, 1)]

    (sent,) = fake.received
    assert sent.path == GENERATE_PATH
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert [next(iter(part)) for part in sent.parts] == [
        "text",
        "inlineData",
        "inlineData",
        "inlineData",
    ]
    assert [image["mime_type"] for image in sent.images] == ["image/jpeg"] * 3
    uploaded = [
        Image.open(io.BytesIO(base64.urlsafe_b64decode(image["data"]))) for image in sent.images
    ]
    assert [upload.size for upload in uploaded] == [(640, 480), (300, 200), (200, 200)]
    generation = sent.body["generationConfig"]
    assert generation["responseModalities"] == ["IMAGE"]
    assert generation["imageConfig"] == {"aspectRatio": "4:3", "imageSize": "2K"}
    assert "Image 1 is the content photo." in sent.text
    assert "Image 2 is the style reference." in sent.text
    assert "Image 3 shows the person on the left." in sent.text
    assert "lighting, colour palette, mood and artistic treatment" in sent.text
    assert sent.text.rstrip().endswith(request.prompt)

    report = outputs[0].report
    assert report.engine == "gemini"
    assert report.seed == 7
    assert report.applied["model"] == MODEL
    assert report.applied["aspect_ratio"] == "4:3"
    assert report.applied["attempts"] == 1
    assert report.applied["returned_size"] == [2400, 1792]
    assert report.applied["identity_photos"] == ["the person on the left"]
    assert "no seed" in report.applied["seed"]
    assert report.timings["call"] > 0


def test_several_variations_are_concurrent_calls_within_the_concurrency_limit(
    serve: Any,
) -> None:
    fake, url = serve(image_reply(400, 300, delay_s=0.3))
    engine = make_engine(url, gemini_concurrency=2)

    outputs = engine.remix(request_for(picture(400, 300), num_outputs=4, seed=10))
    engine.close()

    assert len(fake.received) == 4
    assert fake.max_in_flight == 2  # overlapping, and never more than the setting allows
    assert [output.report.variation for output in outputs] == [0, 1, 2, 3]
    assert [output.report.seed for output in outputs] == [10, 11, 12, 13]
    assert all(output.image.shape == (240, 320, 3) for output in outputs)
    assert len({received.text for received in fake.received}) == 4  # a hint per variation
    assert len({output.report.variation_description for output in outputs}) == 4


def test_variation_offset_renders_the_same_variation_again(serve: Any) -> None:
    fake, url = serve(image_reply(400, 300))
    engine = make_engine(url)

    first = engine.remix(request_for(picture(400, 300), num_outputs=3))
    again = engine.remix(request_for(picture(400, 300), num_outputs=1, variation_offset=2))
    engine.close()

    assert again[0].report.variation == 2
    assert again[0].report.seed == 2
    assert again[0].report.variation_description == first[2].report.variation_description
    assert variation_for(2).hint in fake.received[-1].text
    # The first three calls arrive in any order; variation 2's text is one of them.
    assert fake.received[-1].text in {received.text for received in fake.received[:3]}


def test_blocked_prompt_is_content_moderation_and_not_retried(serve: Any) -> None:
    fake, url = serve(Reply({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}))
    engine = make_engine(url)

    with pytest.raises(ContentModerationError, match="PROHIBITED_CONTENT") as caught:
        engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert caught.value.reason == "PROHIBITED_CONTENT"
    assert isinstance(caught.value, EngineError)
    assert len(fake.received) == 1


def test_image_safety_finish_reason_is_content_moderation(serve: Any) -> None:
    fake, url = serve(Reply({"candidates": [{"finishReason": "IMAGE_SAFETY"}]}))
    engine = make_engine(url)

    with pytest.raises(ContentModerationError) as caught:
        engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert caught.value.reason == "IMAGE_SAFETY"
    assert "IMAGE_SAFETY" in str(caught.value)
    assert len(fake.received) == 1


def test_text_only_reply_is_retried_then_a_clear_engine_error(serve: Any) -> None:
    fake, url = serve(text_reply("I can't edit this photo."))
    engine = make_engine(url, gemini_retries=2)

    with pytest.raises(EngineError, match="no image") as caught:
        engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert not isinstance(caught.value, ContentModerationError)
    assert "I can't edit this photo." in str(caught.value)
    assert "3 attempts" in str(caught.value)
    assert len(fake.received) == 3


def test_rate_limit_then_success_is_retried(serve: Any) -> None:
    fake, url = serve(
        error_reply(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), image_reply(400, 300)
    )
    engine = make_engine(url)

    outputs = engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert len(fake.received) == 2
    assert fake.received[0].body == fake.received[1].body  # the same call, sent again
    assert outputs[0].report.applied["attempts"] == 2
    assert outputs[0].image.shape == (240, 320, 3)


def test_rate_limit_that_persists_ends_in_an_engine_error(serve: Any) -> None:
    fake, url = serve(error_reply(429, "RESOURCE_EXHAUSTED", "Quota exceeded"))
    engine = make_engine(url, gemini_retries=1)

    with pytest.raises(EngineError, match="rate-limiting"):
        engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert len(fake.received) == 2


def test_timeout_is_retried_then_an_engine_error(serve: Any) -> None:
    fake, url = serve(image_reply(400, 300, delay_s=1.5))
    engine = make_engine(url, gemini_timeout_s=0.2, gemini_retries=1)

    started = time.perf_counter()
    with pytest.raises(EngineError, match=r"did not answer within 0\.2 s \(2 attempts\)"):
        engine.remix(request_for(picture(400, 300)))
    elapsed = time.perf_counter() - started
    engine.close()

    assert len(fake.received) == 2
    assert elapsed < 1.5  # gave up on each call after the timeout, not the server's delay


def test_unknown_model_is_not_retried_and_names_the_setting(serve: Any) -> None:
    fake, url = serve(error_reply(404, "NOT_FOUND", "models/x is not found"))
    engine = make_engine(url)

    with pytest.raises(EngineError, match="PHOTOREMIX_GEMINI_MODEL"):
        engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert len(fake.received) == 1


def test_thought_images_are_skipped(serve: Any) -> None:
    reply = image_reply(400, 300, colour=(10, 200, 10))
    draft = {"thought": True, **image_part(400, 300, (0, 0, 255))}
    reply.body["candidates"][0]["content"]["parts"].insert(0, draft)
    reply.body["candidates"][0]["content"]["parts"].append(draft)
    _, url = serve(reply)
    engine = make_engine(url)

    (output,) = engine.remix(request_for(picture(400, 300)))
    engine.close()

    assert np.abs(output.image.astype(int) - [10, 200, 10]).max() <= 1


def test_identity_photos_beyond_the_input_limit_are_left_out_and_reported(serve: Any) -> None:
    fake, url = serve(image_reply(400, 300))
    engine = make_engine(url, gemini_model="gemini-2.5-flash-image")  # 3 images at most
    identities = tuple(
        IdentityImage(name, picture(96, 96, seed)) for seed, name in enumerate(["Ann", "Bo", "Cy"])
    )

    (output,) = engine.remix(request_for(picture(400, 300), identities=identities))
    engine.close()

    (sent,) = fake.received
    assert len(sent.images) == 3
    assert "Image 3 shows Ann." in sent.text
    assert "Bo" not in sent.text
    assert "imageSize" not in sent.body["generationConfig"]["imageConfig"]  # 1K-only model
    assert output.report.applied["identity_photos"] == ["Ann"]
    assert output.report.applied["identity_photos_left_out"] == ["Bo", "Cy"]


def test_faces_are_detected_when_not_given_and_counted_in_report_and_prompt(
    serve: Any, grace_hopper: np.ndarray
) -> None:
    fake, url = serve(image_reply(896, 1024))
    engine = make_engine(url)
    content = grace_hopper  # (600, 512): one face

    (detected,) = engine.remix(RemixRequest(content, picture(300, 300), output_size=(256, 300)))
    faces = detect_faces(content)
    (given,) = engine.remix(
        RemixRequest(content, picture(300, 300), output_size=(256, 300), faces=faces * 2)
    )
    engine.close()

    assert len(faces) == 1
    assert detected.report.applied["faces_in_content"] == 1
    assert detected.report.timings["detect_faces"] > 0
    assert "shows one face" in fake.received[0].text
    assert given.report.applied["faces_in_content"] == 2  # the request's faces, as given
    assert given.report.timings["detect_faces"] == 0
    assert "shows 2 faces" in fake.received[1].text


# --- settings and registry ----------------------------------------------------------------


def test_problem_names_the_missing_key() -> None:
    assert "PHOTOREMIX_GEMINI_API_KEY" in (problem(Settings(gemini_api_key=None)) or "")
    assert "PHOTOREMIX_GEMINI_API_KEY" in (problem(Settings(gemini_api_key="  ")) or "")
    assert problem(Settings(gemini_api_key="k")) is None
    bad_url = problem(Settings(gemini_api_key="k", gemini_base_url="localhost:9"))
    assert bad_url is not None and "PHOTOREMIX_GEMINI_BASE_URL" in bad_url


def test_registry_builds_the_engine_or_names_the_key() -> None:
    with pytest.raises(EngineError, match="PHOTOREMIX_GEMINI_API_KEY"):
        get_engine("gemini", Settings(gemini_api_key=None))
    engine = get_engine("gemini", Settings(gemini_api_key="k"))
    assert isinstance(engine, GeminiEngine)
    engine.close()


# --- pure helpers ---------------------------------------------------------------------------


def test_fit_to_size_crops_the_centre_of_an_image_that_already_covers() -> None:
    image = picture(300, 100)
    assert np.array_equal(fit_to_size(image, (100, 100)), image[:, 100:200])
    assert np.array_equal(fit_to_size(image, (300, 100)), image)


def test_fit_to_size_scales_to_cover_then_crops_the_overhang_evenly() -> None:
    # Ramps across and down: the fitted image shows which part of the original it kept.
    width, height = 100, 50
    across = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    down = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    image = np.stack([across, down, np.zeros_like(across)], axis=-1).round().astype(np.uint8)

    # 300x120 needs x3 to cover (x2.4 would leave the sides short): 300x150, so 15 rows
    # are cut from the top and 15 from the bottom, and no column is lost.
    fitted = fit_to_size(image, (300, 120))

    assert fitted.shape == (120, 300, 3) and fitted.dtype == np.uint8
    assert fitted.flags.c_contiguous
    assert fitted[:, 0, 0].mean() < 3 and fitted[:, -1, 0].mean() > 252
    top, bottom = fitted[0, :, 1].mean(), fitted[-1, :, 1].mean()
    assert abs(top - 255 * 15 / 149) < 4 and abs(bottom - 255 * 134 / 149) < 4


def test_fit_to_size_takes_a_gemini_2k_image_to_the_exact_output_size() -> None:
    output_size = output_size_2k(4000, 3000)
    fitted = fit_to_size(np.full((1792, 2400, 3), 128, np.uint8), output_size)  # 4:3 at 2K
    assert fitted.shape == (output_size[1], output_size[0], 3)


def test_fit_to_size_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_to_size(picture(64, 48)[..., :1], (32, 32))
    with pytest.raises(ValueError):
        fit_to_size(picture(64, 48), (0, 32))


@pytest.mark.parametrize(
    ("model", "size", "ratio"),
    [
        (MODEL, (640, 480), "4:3"),
        (MODEL, (1920, 1080), "16:9"),
        (MODEL, (1080, 1920), "9:16"),
        (MODEL, (3000, 2000), "3:2"),
        (MODEL, (1000, 4000), "1:4"),
        ("gemini-3-pro-image", (1000, 4000), "9:16"),
        ("gemini-3-pro-image", (2000, 1000), "16:9"),
    ],
)
def test_nearest_aspect_ratio(model: str, size: tuple[int, int], ratio: str) -> None:
    assert nearest_aspect_ratio(*size, model_limits(model).aspect_ratios) == ratio


def test_instruction_names_roles_in_order_and_ends_with_the_user_prompt() -> None:
    text = remix_instruction(
        "make it night", ["the person on the left"], 0.0, ["content", "reference", "identity"]
    )
    assert text.index("Image 1 is the content photo.") < text.index("Image 2 is the style")
    assert "Image 3 shows the person on the left." in text
    assert text.endswith("make it night")

    qwen_style = remix_instruction(None, [], 0.0, ["reference", "content"], image_label="Picture")
    assert "Picture 1 is the style reference." in qwen_style
    assert "Picture 2 is the content photo." in qwen_style


def test_identity_protection_makes_the_face_wording_stricter() -> None:
    roles = ["content", "reference"]
    texts = [remix_instruction(None, [], protection, roles) for protection in (0.0, 0.3, 1.0)]
    assert len(set(texts)) == 3
    assert "change only the light" in texts[2]


def test_instruction_counts_the_faces_to_keep_before_the_engine_notes() -> None:
    roles = ["content", "reference"]
    assert "The content photo shows" not in remix_instruction(None, [], 0.0, roles, face_count=0)
    one = remix_instruction(None, [], 0.0, roles, face_count=1, notes=["NOTE"])
    assert one.index("shows one face; keep that person recognisable") < one.index("NOTE")
    three = remix_instruction("be bold", [], 0.0, roles, face_count=3)
    assert "shows 3 faces; keep every one recognisable" in three
    assert three.endswith("be bold")


def test_instruction_rejects_roles_that_do_not_match_the_names() -> None:
    with pytest.raises(ValueError):
        remix_instruction(None, ["Ann"], 0.0, ["content", "reference"])
    with pytest.raises(ValueError):
        remix_instruction(None, [], 0.0, ["content", "style"])


# --- through the service: engine selection, moderation as a 400, money refunded ----------


def _gemini_service_settings(tmp_path: Any, base_url: str) -> Settings:
    from service_support import make_settings

    return make_settings(
        tmp_path,
        engines=["classic", "gemini"],
        gemini_api_key="test-key",
        gemini_base_url=base_url,
        gemini_model=MODEL,
        gemini_retries=0,
        identity_rerender_attempts=0,
    )


def test_service_renders_with_gemini_when_asked_and_classic_by_default(
    serve: Any, tmp_path: Any
) -> None:
    from service_support import REMIX, new_key, remix_body, service_client

    fake, base_url = serve(image_reply(2400, 1792))
    settings = _gemini_service_settings(tmp_path, base_url)
    _, key = new_key(settings, "1.00")
    headers = {"X-API-Key": key}
    with service_client(settings) as client:
        engines = client.get("/v1/engines", headers=headers).json()["engines"]
        assert {e["name"]: e["ready"] for e in engines} == {
            "classic": True,
            "gemini": True,
            "qwen": False,
        }
        answer = client.post(REMIX, json=remix_body(engine="gemini"), headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["reports"][0]["engine"] == "gemini"
        assert len(fake.received) == 1
        default = client.post(REMIX, json=remix_body(), headers=headers)
        assert default.status_code == 200, default.text
        assert default.json()["reports"][0]["engine"] == "classic"
        assert len(fake.received) == 1  # the default did not call Gemini
        balance = client.get("/v1/phota/balance", headers=headers).json()["balance"]
        assert balance == "0.76"  # two outputs at 0.12


def test_service_answers_content_moderation_with_400_and_charges_nothing(
    serve: Any, tmp_path: Any
) -> None:
    from service_support import REMIX, new_key, remix_body, service_client

    blocked = Reply({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    _, base_url = serve(blocked)
    settings = _gemini_service_settings(tmp_path, base_url)
    _, key = new_key(settings, "1.00")
    headers = {"X-API-Key": key}
    with service_client(settings) as client:
        answer = client.post(REMIX, json=remix_body(engine="gemini"), headers=headers)
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["code"] == "CONTENT_MODERATION"
        assert "PROHIBITED_CONTENT" in body["detail"]
        account = client.get("/v1/phota/balance", headers=headers).json()
        assert account["balance"] == "1.00"
        assert [row["kind"] for row in account["ledger"][:2]] == ["refund", "reserve"]
