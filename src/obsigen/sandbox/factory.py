"""Build the platform's sandbox runner from settings: detect, sweep leftovers, make the pool."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from obsigen.config import SandboxSettings
from obsigen.sandbox import cgroups
from obsigen.sandbox.bwrap import BwrapBackend
from obsigen.sandbox.detect import Detection, build_seccomp, detect
from obsigen.sandbox.gvisor import GVisorBackend
from obsigen.sandbox.interfaces import Limits, SandboxBackend, SandboxUnavailable
from obsigen.sandbox.pool import SandboxPool
from obsigen.sandbox.statedir import new_instance_dir, remove_instance, sweep_stale

log = logging.getLogger(__name__)


def limits_from(settings: SandboxSettings) -> Limits:
    return Limits(
        wall_time_s=settings.timeout_s,
        memory_mb=settings.memory_mb,
        cpus=settings.cpus,
        pids=settings.pids,
        workspace_mb=settings.workspace_mb,
        output_bytes=settings.output_kb * 1024,
    )


@functools.cache
def _sweep_once(runsc: str | None) -> None:
    # Sandboxes of a server that crashed: once per process is enough.
    removed = sweep_stale(runsc)
    if removed:
        log.warning("removed the sandboxes of %d exited server process(es)", removed)


def _make_backend(detection: Detection, instance: Path) -> SandboxBackend:
    if detection.backend == "gvisor":
        assert detection.runsc is not None
        return GVisorBackend(detection.runsc, instance)
    assert detection.bwrap is not None
    bpf = instance / "seccomp.bpf"
    problem = build_seccomp(bpf)
    if problem is not None:
        raise SandboxUnavailable(problem)
    return BwrapBackend(detection.bwrap, instance, bpf, use_cgroups=cgroups.available())


def _backend(detection: Detection) -> tuple[SandboxBackend, functools.partial[None]]:
    instance = new_instance_dir()
    cleanup = functools.partial(remove_instance, instance, detection.runsc)
    try:
        backend = _make_backend(detection, instance)
    except BaseException:
        cleanup()
        raise
    return backend, cleanup


def _kubernetes_runner(settings: SandboxSettings) -> SandboxPool:
    from obsigen.sandbox.kubernetes import KubeApi, KubernetesBackend, PodSettings

    if not settings.k8s_image:
        raise SandboxUnavailable("sandbox backend 'kubernetes' needs sandbox.k8s_image")
    api = KubeApi(settings.k8s_api_url) if settings.k8s_api_url else KubeApi.in_cluster()
    pods = PodSettings(settings.k8s_namespace, settings.k8s_image, settings.k8s_runtime_class)
    # size=0: a Pod is made with its code, so there is nothing to prepare ahead.
    return SandboxPool(
        KubernetesBackend(api, pods),
        limits_from(settings),
        size=0,
        concurrency=settings.concurrency,
        queue_timeout_s=settings.queue_timeout_s,
    )


def build_runner(settings: SandboxSettings) -> SandboxPool | None:
    """The runner, or None when no backend works here (``obsigen doctor`` says why).

    A backend named explicitly in the settings that cannot run is an error, not a fallback.
    """
    if settings.backend == "kubernetes":
        return _kubernetes_runner(settings)
    detection = detect(settings.backend)
    if detection.backend is None:
        if settings.backend != "auto":
            raise SandboxUnavailable(f"sandbox backend {settings.backend!r}: {detection.reason}")
        log.warning("code execution is off: %s", detection.reason)
        return None
    _sweep_once(detection.runsc)
    backend, cleanup = _backend(detection)
    return SandboxPool(
        backend,
        limits_from(settings),
        size=settings.pool_size,
        concurrency=settings.concurrency,
        queue_timeout_s=settings.queue_timeout_s,
        on_close=cleanup,
    )
