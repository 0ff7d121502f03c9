"""What a CUDA machine depends on: first the logic of the GPU paths, checked on the CPU (memory
shares, what a failed job leaves behind, where created tensors live, the flags chosen, cluster
devices, the fast-mode estimate), then `gpu`-marked renders that need CUDA and skip without it.
"""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mediagen
import numpy as np
import pytest
import torch

from vidstyle import reproducible
from vidstyle.batch import plan_batch
from vidstyle.config import RenderSettings
from vidstyle.errors import ResourceError
from vidstyle.media.frames import unit_floats
from vidstyle.render import memory
from vidstyle.render.job import render_job
from vidstyle.stylize import color

CUDA = torch.device("cuda")
META = torch.device("meta")  # shapes and devices without memory: where would a tensor go?
SETTINGS = RenderSettings(
    features="random", size=48, first_iterations=2, iterations=1, encoder_preset="ultrafast"
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# --------------------------------------------------------------------------------------------
# Frames reach a GPU with the CPU's values


def test_frames_become_the_values_the_cpu_divides() -> None:
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    expected = np.divide(np.arange(256, dtype=np.uint8), 255.0, dtype=np.float32)
    converted = unit_floats(every_value)
    assert converted.dtype == torch.float32 and converted.is_contiguous()
    assert np.array_equal(converted[0, 0].flatten().numpy(), expected)
    assert unit_floats(torch.zeros(1, 3, 4, 4, dtype=torch.uint8, device=META)).device == META


@pytest.mark.gpu
@needs_cuda
def test_frames_on_a_gpu_have_the_cpus_values() -> None:
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    assert torch.equal(unit_floats(every_value.to(CUDA)).cpu(), unit_floats(every_value))


# --------------------------------------------------------------------------------------------
# Memory: a job's share of a GPU that other jobs (and its own last job) use


class FakeGpu:
    """torch.cuda's memory calls for one GPU of `total` bytes, on which this process holds
    `cached` bytes from its last job and `live` bytes of tensors it keeps."""

    def __init__(self, total: int, others: int, cached: int, live: int = 0) -> None:
        self.total, self.others, self.cached, self.live = total, others, cached, live
        self.calls: list[str] = []

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")
        self.cached = 0

    def mem_get_info(self, device: object = None) -> tuple[int, int]:
        self.calls.append("mem_get_info")
        return self.total - self.others - self.cached - self.live, self.total

    def memory_reserved(self, device: object = None) -> int:
        return self.cached + self.live


GIB = 1 << 30


def test_a_jobs_share_of_the_gpu_counts_its_own_memory_and_not_the_others_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two workers on a 24 GiB GPU: the other holds its half; this one kept 10 GiB cached from
    # its last job and 1 GiB of networks. Its share is the other half, not a quarter.
    gpu = FakeGpu(total=24 * GIB, others=12 * GIB, cached=10 * GIB, live=1 * GIB)
    for name in ("empty_cache", "mem_get_info", "memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, getattr(gpu, name))
    assert memory.available_bytes(CUDA) == 12 * GIB
    assert gpu.calls == ["empty_cache", "mem_get_info"]  # the cache is released, then counted
    assert memory.share_bytes(CUDA, 2) == 12 * GIB
    # A job needing 10 GiB (under 90% of its half) fits, as the first job of the batch did.
    pixels = (10 * GIB - memory._FIXED_BYTES["cuda"]) // (
        memory._QUALITY_BYTES_PER_PIXEL + memory._PIPELINE_BYTES_PER_PIXEL
    )
    side = int(pixels**0.5) // 16 * 16
    memory.check_fits((side, side), (side, side), CUDA, Path("b.mp4"), mode="quality", sharing=2)
    # Alone on an idle GPU the same job has it all; with a third worker it is refused.
    assert memory.share_bytes(CUDA, 1) == 12 * GIB
    gpu.others = 0
    with pytest.raises(ResourceError, match="shared by 3 parallel renders"):
        memory.check_fits(
            (side, side), (side, side), CUDA, Path("b.mp4"), mode="quality", sharing=3
        )


# --------------------------------------------------------------------------------------------
# A failed job leaves nothing of its render behind


def test_a_failed_job_leaves_no_tensor_referenced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=3, audio=False)
    style = mediagen.make_image(tmp_path / "style.png", (48, 48))
    job = plan_batch([clip], [style], SETTINGS, output=tmp_path / "out").jobs[0]
    held: list[weakref.ref[torch.Tensor]] = []

    def optimise(image: torch.Tensor) -> None:
        history = [image * 2.0 for _ in range(3)]  # what an optimiser keeps
        held.extend(weakref.ref(t) for t in history)
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def render(plan: object, device: object, **kwargs: object) -> None:
        activations = torch.ones(64, 64)
        held.append(weakref.ref(activations))
        optimise(activations)

    monkeypatch.setattr("vidstyle.render.pipeline.render", render)
    result = render_job(job.plan, "cpu")
    assert result.status == "failed" and "ran out of memory" in result.message
    gc.collect()
    assert len(held) == 4 and all(ref() is None for ref in held)
    # The error is still there for a traceback (file and line), without the frames' locals.
    assert isinstance(result.error, RuntimeError) and result.error.__traceback__ is not None


# --------------------------------------------------------------------------------------------
# Tensors are made on the device of the frames they meet


@pytest.mark.parametrize("method", ["eigen", "cholesky"])
def test_colour_matching_makes_its_matrices_on_the_frames_device(method: str) -> None:
    image = torch.rand(1, 3, 8, 8, device=META)
    assert color.match_color(image, image, method).device == META


def test_colour_transforms_stay_on_the_frames_device() -> None:
    image = torch.rand(1, 3, 8, 8, device=META)
    assert color.rgb_to_yiq(image).device == META
    assert color.restore_chroma(image, image).device == META
    assert color.luminance(image).device == META


def test_colour_matrices_are_placed_on_a_device_once() -> None:
    image = torch.rand(1, 3, 8, 8, device=META)
    first = color._placed(color._RGB_TO_YIQ, image)
    assert first.device == META and first.dtype == torch.float32
    assert color._placed(color._RGB_TO_YIQ, image.clone()) is first
    assert color._placed(color._RGB_TO_YIQ, image.double()) is not first  # per dtype too


# --------------------------------------------------------------------------------------------
# The CUDA flags a render sets


@pytest.fixture
def cuda_flags(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Process-wide flags and environment put back after the test."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv(reproducible.BENCHMARK_ENV, raising=False)
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def test_a_cuda_render_chooses_deterministic_algorithms(cuda_flags: None) -> None:
    torch.backends.cudnn.benchmark = True  # as a caller may have left it
    flags = reproducible.configure(CUDA)
    assert flags == reproducible.CudaFlags(deterministic=True, benchmark=False)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled()
    # warn-only: reflection padding's backward has no deterministic CUDA kernel to refuse with
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_cudnn_autotuning_is_opt_in_and_gives_up_determinism(
    cuda_flags: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(reproducible.BENCHMARK_ENV, "1")
    assert reproducible.configure(CUDA) == reproducible.CudaFlags(
        deterministic=False, benchmark=True
    )
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_cpu_render_leaves_the_flags_alone(cuda_flags: None) -> None:
    torch.backends.cudnn.benchmark = True
    assert reproducible.configure(torch.device("cpu")) is None
    assert torch.backends.cudnn.benchmark and "CUBLAS_WORKSPACE_CONFIG" not in os.environ


# --------------------------------------------------------------------------------------------
# A GPU cluster renders on its GPUs


class FakeRay:
    """What ClusterExecutor asks of a connected cluster: its resources and its nodes."""

    def __init__(self, nodes: list[dict[str, float]]) -> None:
        self._nodes = [{"Alive": True, "Resources": resources} for resources in nodes]

    def cluster_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for node in self._nodes:
            for name, value in node["Resources"].items():
                total[name] = total.get(name, 0) + value
        return total

    def nodes(self) -> list[dict[str, object]]:
        return self._nodes


def executor_on(
    nodes: list[dict[str, float]], device: str, threads: int | None, monkeypatch: pytest.MonkeyPatch
) -> Any:
    from vidstyle.batch import cluster

    monkeypatch.setattr(cluster, "connect", lambda address: FakeRay(nodes))
    return cluster.ClusterExecutor("auto", device, threads)


def test_device_auto_on_a_gpu_cluster_renders_on_its_gpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A CPU-only head and two GPU nodes: 16 CPUs for 2 GPUs, 12 CPUs for 4 GPUs.
    nodes = [{"CPU": 64.0}, {"CPU": 16.0, "GPU": 2.0}, {"CPU": 12.0, "GPU": 4.0}]
    executor = executor_on(nodes, "auto", None, monkeypatch)
    assert executor.spec.device == "cuda"
    # Each render asks for a GPU and the CPUs per GPU of the leanest GPU node, so every GPU
    # node runs a render per GPU and the node's other tasks stay off the cores they use.
    assert executor.resources == {"num_gpus": 1.0, "num_cpus": 3.0}
    assert executor.spec.threads == 3
    assert executor.slots() == 6


def test_device_auto_on_a_cpu_cluster_renders_on_its_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    executor = executor_on([{"CPU": 8.0}], "auto", None, monkeypatch)
    assert executor.spec.device == "cpu" and executor.resources == {"num_cpus": 1.0}
    given = executor_on([{"CPU": 8.0, "GPU": 1.0}], "cuda", 2, monkeypatch)
    assert given.resources == {"num_gpus": 1.0, "num_cpus": 2.0}  # --threads as given


# --------------------------------------------------------------------------------------------
# Fast mode's memory on a GPU: by precision, and the advice that keeps the picture


def fake_gpu(monkeypatch: pytest.MonkeyPatch, total: int) -> FakeGpu:
    gpu = FakeGpu(total=total, others=0, cached=0)
    for name in ("empty_cache", "mem_get_info", "memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, getattr(gpu, name))
    return gpu


def test_the_fast_preset_at_1080p_fits_a_12_gb_card_in_16_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gpu(monkeypatch, total=12 * 10**9)
    full_hd = (1920, 1080)
    half = memory.estimate_bytes(full_hd, CUDA, mode="fast", batch_size=4, half=True)
    single = memory.estimate_bytes(full_hd, CUDA, mode="fast", batch_size=4)
    assert half < 0.7 * single
    memory.check_fits(full_hd, full_hd, CUDA, Path("a.mp4"), mode="fast", batch_size=4, half=True)
    with pytest.raises(ResourceError):
        memory.check_fits(full_hd, full_hd, CUDA, Path("a.mp4"), mode="fast", batch_size=4)
    # The CPU's figure was measured in float32 and stays as it was.
    cpu = torch.device("cpu")
    assert memory.estimate_bytes(full_hd, cpu, mode="fast", half=True) == memory.estimate_bytes(
        full_hd, cpu, mode="fast"
    )


def test_fast_mode_that_does_not_fit_is_told_a_batch_size_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gpu(monkeypatch, total=8 * 10**9)
    full_hd = (1920, 1080)
    with pytest.raises(ResourceError) as refused:
        memory.check_fits(full_hd, full_hd, CUDA, Path("a.mp4"), mode="fast", batch_size=8)
    message = str(refused.value)
    assert "use --batch-size 2 or less, or render smaller with --size" in message
    # Quality mode has no batch to shrink.
    with pytest.raises(ResourceError, match="render smaller with --size") as quality:
        memory.check_fits(full_hd, full_hd, CUDA, Path("a.mp4"), mode="quality")
    assert "--batch-size" not in str(quality.value)


# --------------------------------------------------------------------------------------------
# Training data is drawn ahead on a thread, as the step would have drawn it


def test_batches_drawn_ahead_are_the_batches_a_step_would_draw(tmp_path: Path) -> None:
    from vidstyle.stylize.train import TrainingSet, prefetch_batches

    folder = tmp_path / "images"
    folder.mkdir()
    paths = [mediagen.make_image(folder / f"{i}.png", (40, 36), seed=i) for i in range(3)]
    dataset = TrainingSet([], paths, 32)
    inline = torch.Generator().manual_seed(7)
    expected = [(dataset.sample(2, inline), inline.get_state()) for _ in range(4)]
    ahead = torch.Generator().manual_seed(7)
    drawn = list(prefetch_batches(dataset, 2, ahead, 4, pairs=False, device=torch.device("cpu")))
    assert len(drawn) == 4
    for batch, (crops, state) in zip(drawn, expected, strict=True):
        assert torch.equal(batch.crops, crops) and batch.pairs is None
        # What a checkpoint after this step saves: the state right after this batch's draws.
        assert torch.equal(batch.rng_after, state)


# --------------------------------------------------------------------------------------------
# Optical flow reads the decoder's frames, not the device's


def test_flow_reads_the_decoded_frames_without_copying_the_content_back() -> None:
    from vidstyle.frame import FrameRecord
    from vidstyle.temporal.flow import FlowStage

    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frames = [first, np.roll(first, 2, axis=1), np.roll(first, 4, axis=1)]
    # Content on the meta device holds no values: copying it back would fail.
    records = [
        FrameRecord(i, i, torch.empty(1, 3, 48, 64, device=META), rgb8=frame)
        for i, frame in enumerate(frames)
    ]
    out = list(FlowStage("medium", scene_cut_threshold=0.0)(records))
    assert out[0].flow is None and out[0].new_shot
    for record in out[1:]:
        assert record.flow is not None and record.flow.device == META
        assert record.reliable is not None and record.reliable.shape == (1, 1, 48, 64)


# --------------------------------------------------------------------------------------------
# On a GPU (skipped without CUDA): each mode, training, a batch sharing a GPU, a job after an
# out-of-memory one


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=3, audio=False)
    return clip, mediagen.make_image(tmp_path / "style.png", (48, 48))


def assert_same_frames_twice(args: list[object], folder: Path) -> None:
    """`vidstyle ARGS -o OUT` run twice (a 3-frame clip) decodes to the same 3 frames."""
    from clitools import decoded, run

    outs = [folder / "a.mp4", folder / "b.mp4"]
    for out in outs:
        assert run([*args, "-o", out]) == 0
    first, second = (decoded(out) for out in outs)
    assert len(first) == 3
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.gpu
@needs_cuda
def test_quality_mode_on_a_gpu_gives_the_same_frames_twice(
    media: tuple[Path, Path], tmp_path: Path
) -> None:
    from clitools import FAST

    clip, style = media
    assert_same_frames_twice([clip, "-s", style, "--device", "cuda", "-q", *FAST], tmp_path)


@pytest.mark.gpu
@needs_cuda
def test_fast_mode_on_a_gpu_gives_the_same_frames_twice(
    media: tuple[Path, Path], tmp_path: Path
) -> None:
    from vidstyle.nets.models import save_model
    from vidstyle.nets.transformer import TransformerNet

    clip, _ = media
    torch.manual_seed(0)
    model = tmp_path / "net.pth"
    save_model(model, TransformerNet("small"), style="random", training={})
    args = [clip, "--model", model, "--device", "cuda", "--size", "48", "-q", "--batch-size", "2"]
    assert_same_frames_twice(args, tmp_path)


@pytest.mark.gpu
@needs_cuda
def test_training_runs_a_few_steps_on_a_gpu(tmp_path: Path) -> None:
    from vidstyle.config import TrainSettings
    from vidstyle.stylize.train import train

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        mediagen.make_image(folder / f"{i}.png", (48, 40), seed=i)
    style = mediagen.make_image(tmp_path / "style.png", (64, 64))
    settings = TrainSettings(
        arch="small", size=32, batch_size=2, steps=3, features="random", device="cuda"
    )
    result = train(style, [folder], tmp_path / "net.pth", settings)
    assert result.steps == 3 and result.model.is_file()
    assert all(np.isfinite(value) for value in result.losses.values())


@pytest.mark.gpu
@needs_cuda
def test_memory_this_process_cached_counts_as_available() -> None:
    before = memory.available_bytes(CUDA)
    assert before is not None
    block = torch.empty(before // 3, dtype=torch.uint8, device=CUDA)
    del block  # kept by the caching allocator, counted as used by the driver
    assert memory.available_bytes(CUDA) >= before * 0.95


@pytest.mark.gpu
@needs_cuda
def test_two_jobs_share_one_gpu(tmp_path: Path) -> None:
    from clitools import FAST, frame_count, run

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        mediagen.make_video(folder / f"{name}.mp4", frames=3, audio=False)
    style = mediagen.make_image(tmp_path / "style.png", (48, 48))
    out = tmp_path / "out"
    args = [folder, "-s", style, "-o", out, "--device", "cuda", "--jobs", "2", "-q", *FAST]
    assert run(args) == 0
    assert [frame_count(out / f"{name}.style.mp4") for name in ("a", "b")] == [3, 3]


@pytest.mark.gpu
@needs_cuda
def test_a_job_after_an_out_of_memory_job_renders(
    media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidstyle.render import pipeline

    clip, style = media
    job = plan_batch([clip], [style], SETTINGS, output=tmp_path / "failed").jobs[0]
    baseline = torch.cuda.memory_allocated(CUDA)
    real_render = pipeline.render

    def out_of_memory(plan: object, device: torch.device, **kwargs: object) -> None:
        free, _ = torch.cuda.mem_get_info(device)
        held = torch.empty(free // 2, dtype=torch.uint8, device=device)  # what a render holds
        more = torch.empty(free, dtype=torch.uint8, device=device)  # more than is left
        raise AssertionError(f"{held.numel() + more.numel()} bytes did not run out of memory")

    monkeypatch.setattr(pipeline, "render", out_of_memory)
    failed = render_job(job.plan, "cuda")
    assert failed.status == "failed" and "ran out of memory" in failed.message
    assert torch.cuda.memory_allocated(CUDA) <= baseline  # nothing of it is still referenced
    monkeypatch.setattr(pipeline, "render", real_render)
    good = plan_batch([clip], [style], SETTINGS, output=tmp_path / "good").jobs[0]
    assert render_job(good.plan, "cuda").status == "rendered"
