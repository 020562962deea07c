"""GPU selection from the environment (issue 16: a container's CUDA_VISIBLE_DEVICES passes
through): each ComfyUI worker is pinned to one of the GPUs *this* process may use, by the entry
CUDA knows it by — not by its position, which would pick GPUs 0 and 1 when the pod was given 2 and 3."""

from __future__ import annotations

from comfypack.comfyui.pool import WorkerPool
from comfypack.comfyui.process import gpu_count, gpu_ids


def test_gpu_ids_read_cuda_visible_devices_as_cuda_does(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-8f3c,-1,5")
    assert gpu_ids() == ["2", "GPU-8f3c"] and gpu_count() == 2  # nothing after -1 is visible
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_ids() == [] and gpu_count() == 0


def test_workers_are_pinned_to_the_visible_gpus_round_robin(monkeypatch, tmp_path):
    (tmp_path / "main.py").write_text("")  # a ComfyUI tree as far as the pool checks; none starts
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    pool = WorkerPool(comfyui_dir=tmp_path, n=3)
    assert [w.process.env["CUDA_VISIBLE_DEVICES"] for w in pool.workers] == ["2", "3", "2"]
    assert not any(w.process.cpu for w in pool.workers)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # no GPU: CPU workers, nothing pinned
    pool = WorkerPool(comfyui_dir=tmp_path, n=2)
    assert all("CUDA_VISIBLE_DEVICES" not in w.process.env and w.process.cpu for w in pool.workers)
